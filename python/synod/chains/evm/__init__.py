"""EVM chains (Ethereum, BNB Chain): addresses, EOA transactions signed by threshold ECDSA,
the custody contract authorised by FROST (BIP340) signatures, and the chain adapter."""
