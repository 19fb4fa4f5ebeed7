"""The scanner: wakes the withdraw worker on a finality notification or on its poll timer."""

from __future__ import annotations

import logging
import threading

from synod.runtime.worker import WithdrawWorker

log = logging.getLogger("synod.runtime.scanner")


class Scanner:
    def __init__(self, worker: WithdrawWorker, poll_interval_s: float = 1.0) -> None:
        self.worker = worker
        self.poll_interval_s = poll_interval_s
        self._wake = threading.Event()
        self.last_finalized = 0

    def notify_finalized(self, height: int) -> None:
        """Called by the consensus layer's event bus on `block.finalized`."""
        self.last_finalized = max(self.last_finalized, height)
        self._wake.set()

    def run_once(self) -> int:
        self._wake.clear()
        return self.worker.step()

    def run(self, stop: threading.Event, max_idle_passes: int | None = None) -> None:
        """Step until `stop` is set (or `max_idle_passes` passes in a row did nothing)."""
        idle = 0
        while not stop.is_set():
            try:
                acted = self.run_once()
            except Exception:  # a chain or signer hiccup must not kill the node
                log.exception("worker pass failed; retrying after the poll interval")
                acted = 0
            idle = 0 if acted else idle + 1
            if max_idle_passes is not None and idle >= max_idle_passes:
                return
            if not acted:
                self._wake.wait(self.poll_interval_s)
