"""Replicated-ledger throughput: ledger transactions and withdrawals per second.

Three ways to apply the same signed withdrawal lifecycles (the `--state` workload: deposit,
request, reserve, start_sign, signed, broadcast, confirm; half Bitcoin, half Ethereum):

- the solo orderer (`SoloConsensus`, the embedded default): each transaction signed, checked
  and finalized in a block of its own on the application, one database transaction each;
- the ABCI application in-process, block-batched: one database transaction per block, every
  transaction's signature and membership checked (what each validator's application does);
- four CometBFT validators on loopback, each with its application: transactions submitted
  with ``broadcast_tx_sync`` spread over the nodes, timed until every node applied them all.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.bench.state import SCRIPT
from synod.chains.localnode import NodeUnavailable, binary_dir
from synod.consensus.app import LedgerApp, needs_attestation
from synod.consensus.client import CometRpc, RpcError
from synod.consensus.committee import Committee, raw_public
from synod.consensus.localnet import LocalNet
from synod.consensus.signed import SignedTx
from synod.processes import die_with_parent
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.state.db import open_database
from synod.state.fees import FeeSchedule
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
CHAIN_ID = "synod-bench"


class Workload:
    """`count` withdrawal lifecycles, signed once up front (signing is the submitter's cost)."""

    def __init__(self, count: int) -> None:
        self.members = {i: Ed25519PrivateKey.generate() for i in range(1, 5)}
        self.operator = Ed25519PrivateKey.generate()
        self.committee = Committee(
            CHAIN_ID,
            {i: raw_public(k) for i, k in self.members.items()},
            {"api": raw_public(self.operator)},
        )
        self.lifecycles = [self._lifecycle(i) for i in range(count)]
        self.signed = [
            [raw for tx in txs for raw in self._sign(tx, i)]
            for i, txs in enumerate(self.lifecycles)
        ]

    @staticmethod
    def _lifecycle(i: int) -> list[Tx]:
        if i % 2:
            deposit: Tx = DepositCredit("btc", "BTC", 100_000, f"{i:064x}:0", i, SCRIPT)
            request = WithdrawRequest(f"r{i}", "btc", "BTC", "bc1pdest", 50_000)
        else:
            fee = FeeSchedule().account_fee("eth")
            deposit = DepositCredit("eth", "ETH", 10**16 + fee, f"0xdep{i}", i)
            request = WithdrawRequest(f"r{i}", "eth", "ETH", "0xdest", 10**16)
        wid = withdraw_id_for(request.request_id)
        return [
            deposit,
            request,
            Reserve(wid),
            StartSign(wid, f"s{i}"),
            Signed(wid, f"s{i}", "sig"),
            Broadcast(wid, f"{i:064x}"),
            Confirm(wid, f"{i:064x}", i + 1),
        ]

    def _sign(self, tx: Tx, i: int) -> list[bytes]:
        """As its submitters send it: a request by the operator key; a witnessed fact (the
        deposit, the confirmation) by a quorum of members, each its own transaction; the
        rest by one member."""
        if isinstance(tx, WithdrawRequest):
            return [SignedTx.sign(tx, "operator:api", self.operator, CHAIN_ID).encode()]
        witnesses = self.committee.attest_quorum if needs_attestation(tx) else 1
        members = [1 + (i + k) % 4 for k in range(witnesses)]
        return [
            SignedTx.sign(tx, f"member:{m}", self.members[m], CHAIN_ID).encode() for m in members
        ]

    @property
    def transactions(self) -> int:
        """Ledger transactions the replicated paths apply (witnessed facts counted once per
        witness)."""
        return sum(len(t) for t in self.signed)

    @property
    def local_transactions(self) -> int:
        """What one local writer applies: every fact once."""
        return sum(len(t) for t in self.lifecycles)


@contextmanager
def _stores(tmp: Path, progress: Progress) -> Iterator[list[tuple[str, Callable[[], str]]]]:
    """(name, new store URL) for SQLite and, when configured, PostgreSQL."""
    made: list[str] = []
    counter = iter(range(10**6))
    stores: list[tuple[str, Callable[[], str]]] = [
        ("SQLite", lambda: f"sqlite:///{tmp / f'bench-{next(counter)}.db'}")
    ]
    dsn = os.environ.get("SYNOD_BENCH_POSTGRES_DSN") or os.environ.get("SYNOD_TEST_POSTGRES_DSN")
    if dsn:
        import psycopg

        def pg() -> str:
            name = f"synod_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            return f"{dsn} dbname={name}"

        stores.append(("PostgreSQL", pg))
    else:
        progress("PostgreSQL skipped (set SYNOD_BENCH_POSTGRES_DSN)")
    try:
        yield stores
    finally:
        if made:
            import psycopg

            with psycopg.connect(dsn or "", autocommit=True) as admin:
                for name in made:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_local(url: str, work: Workload, journal: Path) -> float:
    db = open_database(url)
    consensus = SoloConsensus(Ledger(db), Journal(journal))
    start = time.perf_counter()
    for txs in work.lifecycles:
        for tx in txs:
            consensus.submit(tx)
    secs = time.perf_counter() - start
    consensus.journal.close()
    db.close()
    return secs


def run_batched(url: str, work: Workload, block_size: int) -> float:
    app = LedgerApp(open_database(url), open_database(url), work.committee)
    flat = [raw for txs in work.signed for raw in txs]
    start = time.perf_counter()
    for height, k in enumerate(range(0, len(flat), block_size), start=1):
        outcomes, _ = app.finalize_block(height, flat[k : k + block_size])
        app.commit()
        if any(o.code for o in outcomes):
            bad = next(o for o in outcomes if o.code)
            raise RuntimeError(f"benchmark transaction refused: {bad.log}")
    secs = time.perf_counter() - start
    app.close()
    return secs


def run_validators(
    binary: str,
    urls: list[str],
    work: Workload,
    root: Path,
    timeout_commit_ms: int,
    progress: Progress,
) -> tuple[float, int]:
    """Seconds until every node applied every transaction, and the blocks it took."""
    net = LocalNet.create(root, binary, work.committee, urls, timeout_commit_ms, die_with_parent)
    try:
        net.start_all()
        net.wait_height(2)
        start_height = net.height(1)
        # One submitting thread per chain, each through its own node: reservations are FIFO
        # per chain and asset, so a chain's lifecycles must reach the ledger in request order.
        lanes = 2
        errors: list[str] = []

        def submit(lane: int) -> None:
            rpc = net.members[2 * lane].rpc
            for txs in work.signed[lane::lanes]:
                for raw in txs:
                    while True:
                        try:
                            code, log, _ = rpc.broadcast_tx_sync(raw)
                            break
                        except RpcError as err:  # back-pressure: wait for blocks to drain it
                            if "mempool is full" not in str(err):
                                raise
                            time.sleep(0.2)
                    if code:
                        errors.append(log)

        progress(f"submitting {work.transactions} transactions through 2 of the 4 validators")
        start = time.perf_counter()
        threads = [threading.Thread(target=submit, args=(i,)) for i in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"CheckTx refused {len(errors)}: {errors[0]}")
        _wait_all_confirmed(net, work, progress)
        secs = time.perf_counter() - start
        return secs, net.height(1) - start_height
    finally:
        net.close()


def _wait_all_confirmed(net: LocalNet, work: Workload, progress: Progress) -> None:
    rpcs: list[CometRpc] = [m.rpc for m in net.members]
    want = {"btc": 0, "eth": 0}
    for txs in work.lifecycles:
        r = txs[1]
        assert isinstance(r, WithdrawRequest)
        want[r.chain] += r.amount
    deadline, idle, last = time.monotonic() + 600, 0, ""
    while time.monotonic() < deadline:
        withdrawn = [
            (
                rpc.query("/balance", b"btc/BTC")["withdrawn"],
                rpc.query("/balance", b"eth/ETH")["withdrawn"],
            )
            for rpc in rpcs
        ]
        if all(w == (want["btc"], want["eth"]) for w in withdrawn):
            return
        pending = sum(int(rpc.call("num_unconfirmed_txs")["n_txs"]) for rpc in rpcs)
        # Refused, not slow: every mempool empty, every replica at the same totals, no change.
        key = repr(withdrawn)
        idle = idle + 1 if pending == 0 and len(set(withdrawn)) == 1 and key == last else 0
        last = key
        if idle > 50:
            raise RuntimeError("the validators refused part of the workload")
        time.sleep(0.05)
    raise TimeoutError("the validators did not apply the workload within 600 s")


def consensus_table(
    count: int = 1000,
    block_size: int = 500,
    timeout_commit_ms: int = 200,
    progress: Progress = lambda _: None,
) -> str:
    progress(f"signing {count} withdrawal lifecycles")
    work = Workload(count)
    lines = [
        "| path | store | withdrawals | transactions | seconds | withdrawals/s | transactions/s |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(path: str, store: str, secs: float, note: str = "") -> None:
        n = work.local_transactions if path.startswith("solo") else work.transactions
        lines.append(
            f"| {path} | {store} | {count} | {n} | {secs:.1f} | {count / secs:.0f} | "
            f"{n / secs:.0f} |" + (f" {note} |" if note else "")
        )
        progress(lines[-1])

    try:
        binary: str | None = str(
            binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
        )
    except NodeUnavailable as err:
        progress(f"4 validators skipped: {err}")
        binary = None
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with _stores(tmp, progress) as stores:
            for name, new_url in stores:
                progress(f"solo orderer on {name}")
                row(
                    "solo orderer (a block per tx)",
                    name,
                    run_local(new_url(), work, tmp / f"journal-{name}.db"),
                )
                progress(f"ABCI application on {name}, blocks of {block_size}")
                row(
                    f"ABCI app in-process (blocks of {block_size})",
                    name,
                    run_batched(new_url(), work, block_size),
                )
            if binary is None:
                lines.append(
                    "| 4 validators | - | - | - | - | - | - | (no cometbft: "
                    "SYNOD_COMETBFT_DIR=$(scripts/cometbft.sh)) |"
                )
                return "\n".join(lines)
            for name, new_url in stores:
                progress(f"4 validators on {name}")
                urls = [new_url() for _ in range(4)]
                secs, blocks = run_validators(
                    binary, urls, work, tmp / f"net-{name}", timeout_commit_ms, progress
                )
                row(
                    f"4 CometBFT validators (timeout_commit {timeout_commit_ms} ms)",
                    name,
                    secs,
                    f"{blocks} blocks",
                )
    return "\n".join(lines)
