"""The operator surface: a versioned REST API over the ledger (FastAPI, OpenAPI 3.1).

`create_app` builds the application from its parts (ledger and consensus, token store, audit
trail, node view); `synod api run` serves it with uvicorn. Writes become ledger transactions
submitted through consensus; reads come from the ledger's store.
"""
