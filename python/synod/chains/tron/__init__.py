"""TRON: base58check addresses from the threshold-ECDSA group key."""
