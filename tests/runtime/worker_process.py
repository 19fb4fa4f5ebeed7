"""Run the withdraw worker against a store until every withdrawal is confirmed (or forever).
Started as a subprocess by the SIGKILL test: `python worker_process.py DIR`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from tests.runtime.fakes import FakeChain, FakeSigner


def main(workdir: Path) -> None:
    ledger = Ledger(SqliteDatabase(workdir / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(workdir / "journal.db"))
    chains = {c: FakeChain(c, workdir / f"chain-{c}.json", confirm_after=2) for c in ("btc", "eth")}
    signer = FakeSigner()
    worker = WithdrawWorker(
        ledger,
        consensus,
        {"btc": signer, "eth": signer},
        chains,
        WorkerPolicy(max_in_flight_per_chain=2, confirmations={"btc": 2, "eth": 2}, backoff_s=0),
    )
    while True:
        worker.step(max_actions=1)
        print("step", flush=True)  # the parent counts these to kill after real progress
        time.sleep(0.01)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
