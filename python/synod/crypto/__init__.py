"""Typed, I/O-free API over the threshold-signature core (FROST and CGGMP).

- `synod.crypto.frost`: FROST over secp256k1 (BIP340/Taproot) and Ed25519.
- `synod.crypto.ecdsa`: threshold ECDSA (CGGMP) with presignatures and BIP32 derivation.
- `synod.crypto.import_export`: trusted-dealer split and key export (single point of failure).
- `synod.crypto.errors`: exceptions that name culprits.
"""
