"""Bitcoin: Taproot (P2TR) addresses and, later, templates, sighashes and broadcast."""
