"""The `synod` command line."""
