"""Bitcoin: P2TR addresses (`address`), withdrawal transactions with BIP341 key-path sighashes
(`tx`), node clients (`rpc`) and the `ChainAdapter` that broadcasts and watches (`adapter`)."""
