"""Solana: the FROST-Ed25519 group key is the account address.

`address` derives it, `tx` builds a withdrawal's message deterministically from the template
and a recent blockhash, and `adapter` prepares, broadcasts and watches it on a LiteSVM node.
"""
