"""A member process's Prometheus metrics (`synod node run --metrics-port`).

Read at each scrape from the member's latest published `Status` (the numbers its
status.json shows), so the scrape thread never touches the node or the transport: envelope
drops by layer and reason, and how many committee peers are linked. The registry also
carries `synod.metrics` (signing latency, sub-sessions, culprits) for what this process
records there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from synod import metrics

if TYPE_CHECKING:
    from synod.node.process import Status

NOT_DROPS = frozenset({"delivered", "buffered_early"})  # router counters that are no drop


class StatusCollector:
    def __init__(self, latest: Callable[[], Status]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        status = self.latest()
        drops = CounterMetricFamily(
            "synod_envelope_drops",
            "Peer envelopes and connections dropped, by layer and reason.",
            labels=["layer", "reason"],
        )
        for reason, n in sorted(status.transport.items()):
            drops.add_metric(["transport", reason], n)
        for reason, n in sorted(status.router.items()):
            if reason not in NOT_DROPS:
                drops.add_metric(["router", reason], n)
        yield drops
        yield GaugeMetricFamily(
            "synod_peers_connected",
            "Committee peers this member is linked to.",
            value=sum(state == "connected" for state in status.peers.values()),
        )
        pool = GaugeMetricFamily(
            "synod_presignatures",
            "Fresh CGGMP presignatures this member holds, per key.",
            labels=["key_id"],
        )
        for key_id, n in sorted(status.presignatures.items()):
            pool.add_metric([key_id], n)
        yield pool


def node_registry(latest: Callable[[], Status]) -> CollectorRegistry:
    """The member's collector beside the process-wide `synod.metrics` ones."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(latest))
    registry.register(metrics.REGISTRY)
    return registry
