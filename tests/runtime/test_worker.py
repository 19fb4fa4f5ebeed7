"""The withdraw worker with fake signers and chains at the edge: FIFO, in-flight limits, retries,
consensus-paused mode, and crashes between any two actions — in-process and with SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.machine import BALANCE_FIELDS, CONFIRMED, Ledger

from .fakes import FakeChain, FakeSigner
from .scenario import load

POLICY = WorkerPolicy(max_in_flight_per_chain=2, confirmations={"btc": 2, "eth": 2}, backoff_s=0)


def make(
    workdir: Path,
    chains: dict[str, FakeChain] | None = None,
    signer: FakeSigner | None = None,
    policy: WorkerPolicy = POLICY,
) -> tuple[Ledger, SoloConsensus, WithdrawWorker, dict[str, FakeChain]]:
    ledger = Ledger(SqliteDatabase(workdir / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(workdir / "journal.db"))
    chains = chains or {
        c: FakeChain(c, workdir / f"chain-{c}.json", confirm_after=2) for c in ("btc", "eth")
    }
    signer = signer or FakeSigner()
    worker = WithdrawWorker(ledger, consensus, {"btc": signer, "eth": signer}, chains, policy)
    return ledger, consensus, worker, chains


def all_confirmed(ledger: Ledger) -> bool:
    return all(w.status == CONFIRMED for w in ledger.withdrawals())


def check_paid_once(ledger: Ledger, chains: dict[str, FakeChain]) -> None:
    assert all(w.status == CONFIRMED for w in ledger.withdrawals())
    for chain in chains.values():
        for wid, txids in chain.txids_by_withdrawal().items():
            assert len(txids) == 1, f"{wid} was paid by {len(txids)} different transactions"
    for (_c, _a), b in ledger.balances().items():
        assert b["deposited"] == sum(b[k] for k in BALANCE_FIELDS[1:])


def test_runs_to_confirmation_in_fifo_order_within_limits(tmp_path: Path) -> None:
    ledger, _, worker, chains = make(tmp_path)
    load(ledger)
    for _ in range(50):
        in_flight = [
            w
            for w in ledger.withdrawals()
            if w.status in ("RESERVED", "SIGNING", "SIGNED", "BROADCAST")
        ]
        for chain in ("btc", "eth"):
            assert len([w for w in in_flight if w.chain == chain]) <= 2
        worker.step()
        if all_confirmed(ledger):
            break
    check_paid_once(ledger, chains)
    # The order the ledger applied the reservations in (its transaction log), per chain,
    # is the order the withdrawals were requested in.
    rows = ledger.db.query("SELECT body FROM applied_tx WHERE kind = 'reserve' ORDER BY seq")
    reserved_order = list(dict.fromkeys(json.loads(body)["withdraw_id"] for (body,) in rows))
    for chain in ("btc", "eth"):
        order = [w for w in reserved_order if ledger.withdrawal(w).chain == chain]
        assert order == [w.withdraw_id for w in ledger.withdrawals(chain=chain)]


def test_signing_timeout_requeues_with_the_same_template(tmp_path: Path) -> None:
    ledger, _, worker, chains = make(tmp_path, signer=FakeSigner(fail_first=2))
    load(ledger, withdrawals=2)
    templates = {}
    for _ in range(40):
        for w in ledger.withdrawals():
            if w.template_hash:
                assert templates.setdefault(w.withdraw_id, w.template_hash) == w.template_hash
        worker.step()
        if all_confirmed(ledger):
            break
    check_paid_once(ledger, chains)
    assert max(w.attempt for w in ledger.withdrawals()) >= 1


def test_rejected_broadcast_is_retried(tmp_path: Path) -> None:
    ledger, _, worker, _ = make(tmp_path)
    load(ledger, withdrawals=2)
    first = ledger.withdrawals()[0].withdraw_id
    chains = {c: FakeChain(c, confirm_after=1, reject={first}) for c in ("btc", "eth")}
    ledger, _, worker, chains = make(tmp_path, chains=chains)
    for _ in range(40):
        worker.step()
        if all_confirmed(ledger):
            break
    check_paid_once(ledger, chains)
    assert ledger.withdrawal(first).attempt == 1


def test_a_node_error_backs_off_one_withdrawal_not_the_queue(tmp_path: Path) -> None:
    ledger, _, _, _ = make(tmp_path)
    load(ledger, withdrawals=3)
    first = ledger.withdrawals(chain="btc")[0].withdraw_id
    chains = {c: FakeChain(c, confirm_after=1, unreachable={first: 2}) for c in ("btc", "eth")}
    now = [0.0]
    policy = replace(POLICY, backoff_s=30.0)
    ledger, _, worker, chains = make(tmp_path, chains=chains, policy=policy)
    worker.clock = lambda: now[0]
    for _ in range(40):
        worker.step()
    # Everything else went through; the one whose node is down waits out its backoff.
    assert [w.withdraw_id for w in ledger.withdrawals() if w.status != CONFIRMED] == [first]
    assert ledger.withdrawal(first).status == "SIGNED"
    assert "node unreachable" in worker.errors[first]
    for _ in range(2):  # each backoff ends in one more refused attempt, then it goes out
        now[0] += 31.0
        worker.step()
    for _ in range(10):
        worker.step()
    check_paid_once(ledger, chains)


def test_a_failed_transaction_mined_after_all_is_confirmed(tmp_path: Path) -> None:
    """No retries left: the withdrawal stays FAILED but watched, and is confirmed with its txid
    when the chain shows it mined after all."""
    ledger, _, _, _ = make(tmp_path)
    load(ledger, withdrawals=2)
    first = ledger.withdrawals()[0].withdraw_id
    chains = {c: FakeChain(c, confirm_after=1, reject={first}) for c in ("btc", "eth")}
    ledger, _, worker, chains = make(tmp_path, chains=chains, policy=replace(POLICY, max_retry=0))
    for _ in range(40):
        worker.step()
        if all_confirmed(ledger):
            break
    check_paid_once(ledger, chains)
    w = ledger.withdrawal(first)
    assert w.attempt == 0 and w.reason == "fee too low"  # confirmed from FAILED, not retried


def test_paused_consensus_keeps_signing_and_broadcasting(tmp_path: Path) -> None:
    ledger, consensus, worker, chains = make(tmp_path)
    load(ledger, withdrawals=2)
    for _ in range(2):  # reserve, start signing
        worker.step()
    consensus.pause()
    snapshot = [(w.withdraw_id, w.status) for w in ledger.withdrawals()]
    for _ in range(10):
        worker.step()
    assert [(w.withdraw_id, w.status) for w in ledger.withdrawals()] == snapshot  # nothing written
    assert len(consensus.journal) > 0
    assert chains["btc"].state["broadcasts"] and chains["eth"].state["broadcasts"]  # work went on
    # A restart while paused: the journal survives.
    consensus.journal.close()
    ledger, consensus, worker, chains = make(tmp_path)
    assert len(consensus.journal) > 0
    consensus.resume()
    for _ in range(20):
        worker.step()
        if all_confirmed(ledger):
            break
    check_paid_once(ledger, chains)


def test_crash_between_every_two_actions(tmp_path: Path) -> None:
    ledger, _, _, _ = make(tmp_path)
    load(ledger)
    ledger.db.close()
    restarts = 0
    for _ in range(400):
        restarts += 1
        ledger, consensus, worker, chains = make(tmp_path)  # everything volatile is rebuilt
        worker.step(max_actions=1)
        done = all_confirmed(ledger)
        ledger.db.close()
        consensus.journal.close()
        if done:
            break
    ledger, _, _, chains = make(tmp_path)
    check_paid_once(ledger, chains)
    assert restarts > 20


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    """A real worker process, killed with SIGKILL after a random number (1-4) of its actions
    and at a random point inside the next one, restarted each time until all is confirmed."""
    ledger, _, _, _ = make(tmp_path)
    load(ledger, withdrawals=10)
    ledger.db.close()
    script = Path(__file__).with_name("worker_process.py")
    rng = random.Random(7)
    kills = 0
    done = False
    while not done and kills < 300:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)],
            env={**os.environ},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for _ in range(rng.randint(1, 4)):
            if not proc.stdout.readline():
                break  # the process ended by itself: a failure the checks below will show
        time.sleep(rng.random() * 0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kills += 1
        check = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
        done = all(w.status == CONFIRMED for w in check.withdrawals())
        check.db.close()
    ledger, _, _, chains = make(tmp_path)
    check_paid_once(ledger, chains)
    assert done and kills >= 3


def test_scanner_wakes_on_finality_and_polls(tmp_path: Path) -> None:
    import threading

    from synod.runtime.scanner import Scanner

    ledger, _, worker, _ = make(tmp_path)
    load(ledger, withdrawals=2)
    scanner = Scanner(worker, poll_interval_s=0.01)
    scanner.notify_finalized(7)
    assert scanner.last_finalized == 7
    stop = threading.Event()
    thread = threading.Thread(target=scanner.run, args=(stop,), kwargs={"max_idle_passes": 200})
    thread.start()
    for _ in range(5000):  # a bound on notifications, not a deadline
        if all_confirmed(ledger):
            break
        scanner.notify_finalized(scanner.last_finalized + 1)
        time.sleep(0.01)
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the scanner did not stop when asked"
    assert all_confirmed(ledger)


def test_journal_refuses_a_malformed_transaction(tmp_path: Path) -> None:
    """Stored while consensus is paused, a malformed write-back would fail every later read of
    the journal (and stop the worker): it is refused when it is written."""
    from synod.state.errors import MalformedTransaction
    from synod.state.transactions import Requeue

    _, consensus, _, _ = make(tmp_path)
    consensus.pause()
    with pytest.raises(MalformedTransaction):
        consensus.submit(Requeue("w", "retry", "x" * 70_000))
    assert len(consensus.journal) == 0 and consensus.journal.pending() == []


def test_an_unfundable_request_does_not_block_later_ones_that_fit(tmp_path: Path) -> None:
    from synod.state.transactions import DepositCredit, WithdrawRequest

    ledger, _, worker, _ = make(tmp_path)
    script = "5120" + "cd" * 32
    ledger.apply(DepositCredit("btc", "BTC", 400_000, f"{1:064x}:0", 10, script))
    big = ledger.apply(WithdrawRequest("big", "btc", "BTC", "bc1pbig", 10_000_000))
    small = ledger.apply(WithdrawRequest("small", "btc", "BTC", "bc1psmall", 50_000))
    for _ in range(10):
        worker.step()
    assert ledger.withdrawal(small.result["withdraw_id"]).status == CONFIRMED
    assert ledger.withdrawal(big.result["withdraw_id"]).status == "QUEUED"
