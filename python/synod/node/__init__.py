"""A committee member as a process: transport, keystore, manifest and PKI."""
