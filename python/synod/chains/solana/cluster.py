"""A LiteSVM that keeps each account's transaction history, as a cluster's RPC does.

A real node answers ``getSignaturesForAddress``: every processed transaction that touched an
account, newest first. LiteSVM executes transactions but keeps no such index, so this
subclass records, for each transaction it processes (successfully or with an error, fee
charged), its signature and message bytes under every account the message names. Everyone
sending to the local cluster — the adapter, and in tests an aggregator that withheld a
signature — goes through `send_transaction`, so the history is the cluster's, not the
adapter's. Bounded like an RPC page: the newest `HISTORY_LIMIT` per account.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction

HISTORY_LIMIT = 1000


class LocalCluster(LiteSVM):
    """LiteSVM plus `signatures_for_address`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._history: dict[Pubkey, deque[tuple[str, bytes]]] = {}

    def send_transaction(self, tx: Transaction | VersionedTransaction) -> Any:
        result = super().send_transaction(tx)
        sig = tx.signatures[0]
        if self.get_transaction(sig) is not None:  # processed (ok, or failed with fee)
            message = bytes(tx.message)
            for key in tx.message.account_keys:
                entries = self._history.setdefault(key, deque(maxlen=HISTORY_LIMIT))
                entries.appendleft((str(sig), message))
        return result

    def signatures_for_address(self, address: Pubkey) -> list[tuple[str, bytes]]:
        """(signature, message bytes) of the processed transactions naming `address`, newest
        first."""
        return list(self._history.get(address, ()))
