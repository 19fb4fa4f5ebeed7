"""`NodeRunner`: the member's single thread survives a failing job or tick."""

from __future__ import annotations

import time

import pytest

from synod.node import KeyRing, MonotonicClock, SignerNode
from synod.node.runner import NodeRunner
from synod.protocols.envelope import Identity
from synod.state.session_store import SessionStore
from tests.node.loopback import LoopbackNet


def test_a_failing_tick_or_job_does_not_stop_the_runner() -> None:
    me = Identity.generate(1)
    store = SessionStore(":memory:", b"k" * 32)
    node = SignerNode(me, {1: me.public}, 1, LoopbackNet().transport(1), store, KeyRing())
    ticks: list[float] = []

    def failing_tick(now: float) -> None:
        ticks.append(now)
        raise RuntimeError("a bug in a session's tick")

    node.on_tick = failing_tick  # type: ignore[method-assign]
    runner = NodeRunner(node, MonotonicClock(), tick_interval=0.005)
    runner.start()
    try:
        # Jobs back to back, so that ticks fall due right after a job as well as when idle.
        for _ in range(200):
            assert runner.call(lambda n, _now: n.node_id, timeout=5.0) == 1
            if len(ticks) >= 10:
                break
            time.sleep(0.001)

        def failing_job(_node: SignerNode, _now: float) -> None:
            raise ValueError("a bad control request")

        with pytest.raises(ValueError, match="bad control request"):
            runner.call(failing_job, timeout=5.0)  # the caller hears of it
        assert runner.call(lambda n, _now: n.node_id, timeout=5.0) == 1
        assert len(ticks) >= 10
        assert runner.counters["job_error"] >= len(ticks) - 1
    finally:
        runner.stop()
