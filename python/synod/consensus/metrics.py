"""What a replica's `/metrics` shows of the ledger: its committed height, and the witnessed
facts by status with the count of facts members disagree on (more than one version of one
deposit, confirmation, strike or key). Read at scrape time through a connection of its own."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from synod.consensus.app import AttestStatus, Database, witness_counts

STATUSES = (
    AttestStatus.PENDING,
    AttestStatus.APPLIED,
    AttestStatus.REFUSED,
    AttestStatus.FORGED,
    AttestStatus.SUPERSEDED,
)


class LedgerCollector(Collector):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()  # one scrape at a time on the connection

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            rows = dict(self.db.query("SELECT key, value FROM consensus_state"))
            counts = witness_counts(self.db)
        height = GaugeMetricFamily("synod_ledger_height", "The last committed block height.")
        height.add_metric([], float(int(rows.get("height", 0))))
        yield height
        witnessed = GaugeMetricFamily(
            "synod_ledger_witnessed",
            "Witnessed transactions (deposits, confirmations, strikes, keys, proofs) by status.",
            labels=["status"],
        )
        for status in STATUSES:
            witnessed.add_metric([status], float(counts.get(status, 0)))
        yield witnessed
        conflicts = GaugeMetricFamily(
            "synod_ledger_witness_conflicts",
            "Facts reported in more than one version: members who disagree.",
        )
        conflicts.add_metric([], float(counts["conflicts"]))
        yield conflicts


def ledger_registry(db: Database) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(db))
    return registry
