"""What witnessing costs: the time from a fact being known to the ledger acting on it, on four
CometBFT validators on loopback (`python -m synod.bench --witness`).

Each round every member reports the same deposit credit and the same confirmation of an
earlier withdrawal's payment through its own node, each after its own delay: first all at
once (the pure consensus cost), then spread uniformly over one poll interval of the watchers
(`runtime.pollIntervalMs`, 1 s by default), as members' watchers reach the depth at their own
polls. The baseline is a transaction applied on one signer's word (an operator's withdrawal
request) submitted at the first report: what a fact cost when one member's report was enough.
Timed on member 1's replica from the first report to each being applied; the ledger acts on a
witnessed fact at the third report of the four.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.chains.localnode import binary_dir
from synod.consensus.client import ReplicatedConsensus
from synod.consensus.committee import Committee, raw_public
from synod.consensus.localnet import LocalNet
from synod.processes import die_with_parent
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger, withdraw_id_for
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Reserve,
    Signed,
    StartSign,
    Tx,
    WithdrawRequest,
)

Progress = Callable[[str], None]
CHAIN_ID = "synod-bench-witness"
TO = "0x" + "11" * 20
WITNESSES = (1, 2, 3)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def witness_table(
    rounds: int = 50,
    timeout_commit_ms: int = 200,
    poll_s: float = 1.0,
    progress: Progress = print,
) -> str:
    binary = str(binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft")
    keys = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
    operator = Ed25519PrivateKey.generate()
    committee = Committee(
        CHAIN_ID, {i: raw_public(k) for i, k in keys.items()}, {"api": raw_public(operator)}
    )
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        urls = [f"sqlite:///{tmp / f'm{i}.db'}" for i in range(1, 5)]
        net = LocalNet.create(
            tmp / "net", binary, committee, urls, timeout_commit_ms, die_with_parent
        )
        try:
            net.start_all()
            net.wait_height(2)
            members = {
                i: ReplicatedConsensus(net.member(i).rpc, f"member:{i}", keys[i], CHAIN_ID)
                for i in keys
            }
            api = ReplicatedConsensus(net.member(4).rpc, "operator:api", operator, CHAIN_ID)
            replica = Ledger(SqliteDatabase(tmp / "m1.db"))
            return _rounds(rounds, members, api, replica, timeout_commit_ms, poll_s, progress)
        finally:
            net.close()


def _wait(check: Callable[[], bool], what: str) -> float:
    deadline = time.monotonic() + 60.0
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not applied within 60 s: {what}")
        time.sleep(0.005)
    return time.perf_counter()


def _is(status: Callable[[str], str | None], request_id: str, wanted: str) -> bool:
    return status(request_id) == wanted


def _after(delay: float, send: Callable[[], object]) -> None:
    time.sleep(delay)
    send()


def _all_at_once(sends: list[tuple[float, Callable[[], object]]]) -> float:
    """Start every send on its own thread, each after its delay; the start time."""
    threads = [threading.Thread(target=_after, args=pair) for pair in sends]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return start


def _round(
    k: int,
    delays: dict[int, float],
    members: dict[int, ReplicatedConsensus],
    api: ReplicatedConsensus,
    replica: Ledger,
    status: Callable[[str], str | None],
) -> dict[str, float]:
    """One round: each member reports the deposit and the payment after its own delay (its
    watcher's poll); the baseline request goes in at the first report. Milliseconds from the
    first moment a report was possible to each being applied."""
    w = withdraw_id_for(f"pay{k}")
    credit = DepositCredit("eth", "ETH", 1 + k, f"0xdep{k}", 10 + k)
    confirm = Confirm(w, f"0x{k:064x}", 100 + k)
    before = replica.balance("eth", "ETH")["deposited"]
    first = min(delays.values())
    sends: list[tuple[float, Callable[[], object]]] = [
        (first, partial(api.submit, WithdrawRequest(f"base{k}", "eth", "ETH", TO, 1)))
    ]
    for m, delay in delays.items():
        sends += [
            (delay, partial(members[m].submit, credit)),
            (delay, partial(members[m].submit, confirm)),
        ]
    start = _all_at_once(sends)
    done = {"base": 0.0, "deposit": 0.0, "confirm": 0.0}
    while not all(done.values()):
        now = time.perf_counter()
        if not done["base"] and status(f"base{k}"):
            done["base"] = now
        if not done["deposit"] and replica.balance("eth", "ETH")["deposited"] > before:
            done["deposit"] = now
        if not done["confirm"] and status(f"pay{k}") == "CONFIRMED":
            done["confirm"] = now
        if now - start > 60:
            raise TimeoutError(f"round {k} not applied within 60 s: {done}")
        time.sleep(0.002)
    return {name: (at - start - first) * 1000 for name, at in done.items()}


def _rounds(
    rounds: int,
    members: dict[int, ReplicatedConsensus],
    api: ReplicatedConsensus,
    replica: Ledger,
    timeout_commit_ms: int,
    poll_s: float,
    progress: Progress,
) -> str:
    def witnessed(tx: Tx) -> list[Callable[[], object]]:
        return [partial(members[m].submit, tx) for m in WITNESSES]

    def status(request_id: str) -> str | None:
        found = replica.select_withdrawals("request_id = ?", (request_id,), 1)
        return found[0].status if found else None

    # Funds, then a withdrawal walked to BROADCAST per round, for its confirmation later.
    for send in witnessed(DepositCredit("eth", "ETH", 10**20, "0xfunds", 1)):
        send()
    _wait(lambda: replica.balance("eth", "ETH")["deposited"] > 0, "funds")
    for k in range(2 * rounds):
        api.submit(WithdrawRequest(f"pay{k}", "eth", "ETH", TO, 10**15))
    for step, wanted in enumerate(("RESERVED", "SIGNING", "SIGNED", "BROADCAST")):
        for k in range(2 * rounds):
            w = withdraw_id_for(f"pay{k}")
            tx = (Reserve(w), StartSign(w, f"s{k}"), Signed(w, f"s{k}", "sig"),
                  Broadcast(w, f"0x{k:064x}"))[step]  # fmt: skip
            members[1].submit(tx)
        for k in range(2 * rounds):
            _wait(partial(_is, status, f"pay{k}", wanted), f"pay{k} {wanted}")
    lines = [
        f"4 validators, timeout_commit {timeout_commit_ms} ms, {rounds} rounds each, "
        "member 1's replica; every member witnesses, the ledger acts at the third report",
        "",
        "| members' reports | applied | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    rng = random.Random(7)
    for phase, spread_s in enumerate((0.0, poll_s)):
        label = "at once" if not spread_s else f"spread over {spread_s * 1000:.0f} ms"
        progress(f"{rounds} rounds, reports {label}")
        times: dict[str, list[float]] = {"base": [], "deposit": [], "confirm": []}
        for r in range(rounds):
            k = phase * rounds + r
            delays = {m: rng.uniform(0, spread_s) for m in members}
            for name, ms in _round(k, delays, members, api, replica, status).items():
                times[name].append(ms)
        b50, b99 = _percentile(times["base"], 0.5), _percentile(times["base"], 0.99)
        for name, what in (
            ("base", "request on the first report (one member's word, the baseline)"),
            ("deposit", "deposit credit (witnessed)"),
            ("confirm", "confirmation (witnessed)"),
        ):
            p50, p99 = _percentile(times[name], 0.5), _percentile(times[name], 0.99)
            added = f"{p50 - b50:+.0f} | {p99 - b99:+.0f}"
            lines.append(f"| {label} | {what} | {p50:.0f} | {p99:.0f} | {added} |")
    return "\n".join(lines)
