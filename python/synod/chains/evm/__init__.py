"""EVM chains (Ethereum, BNB Chain): addresses from the threshold-ECDSA group key."""
