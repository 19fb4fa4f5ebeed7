"""Deposit watchers: find deposits to the committee on each chain and credit them through
consensus once they are at the configured depth (`base`), one module per chain family."""
