"""The demo's ledger: one local SQLite ledger, or the replicated ledger on CometBFT.

`LocalLedger` is the embedded default: one SQLite database, `SoloConsensus` ordering
each write-back at once (with the audit trail), every member process reading that one
database as its ledger view.

`ReplicatedLedger` (`synod demo --replicated`) runs, beside each member's signer node,
a CometBFT validator with the ledger application over the member's own SQLite replica
(`synod.consensus.localnet`). Every member's signer node reads its own replica; the
withdraw worker (member 1's runtime: `ReplicaRunner`, with its proof attester) reads
replica 1 and writes back as member 1 through its validator; withdrawal requests are
signed by the operator key. The ledger credits a deposit and confirms a payment only when a
quorum of members (three of the five) reports the same one, so members 2 and 3 run witnesses
on their own replicas: their deposit watchers and an `EgressWitness` each, writing back as
themselves through their own validators. A stopped member stops both its validator and its
signer node. At the end every running replica's state digest is compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.config import SynodConfig
from synod.consensus.client import ReplicatedConsensus
from synod.consensus.committee import Committee as LedgerCommittee
from synod.consensus.committee import raw_public
from synod.consensus.localnet import LocalNet
from synod.node.committee import dev_passphrase_path, load_node, node_dir
from synod.node.manifest import Manifest
from synod.runtime.attest import ProofAttester
from synod.runtime.consensus import SoloConsensus, WriteBack
from synod.runtime.interfaces import ChainAdapter
from synod.runtime.journal import Journal
from synod.runtime.replica import ReplicaConsensus, ReplicaRunner
from synod.runtime.witness import EgressWitness
from synod.runtime.worker import WithdrawWorker
from synod.state.audit import AuditLog
from synod.state.db import Database, SqliteDatabase, open_database
from synod.state.machine import Ledger
from synod.state.transactions import WithdrawRequest

CHAIN_ID = "synod-demo"
WORKER_MEMBER = 1
WITNESSES = (2, 3)  # with member 1, the quorum of three that deposits and payments need
TIMEOUT_COMMIT_MS = 200


@dataclass(frozen=True)
class Witness:
    """A member that reports what its own chain view shows: deposits (its watchers, whose
    progress is kept in `watch_db`) and payments (`EgressWitness`), as itself."""

    member: int
    ledger: Ledger
    consensus: WriteBack
    watch_db: SqliteDatabase


class DemoLedger(Protocol):
    @property
    def ledger(self) -> Ledger:  # the worker's view
        ...

    @property
    def consensus(self) -> WriteBack:  # its write-backs
        ...

    @property
    def watch_db(self) -> Database:  # where the deposit watchers keep their progress
        ...

    @property
    def witnesses(self) -> list[Witness]:  # the other members who must report the facts
        ...

    def member_view(self, member: int) -> Path:
        """The database member `member`'s signer node reads as its ledger view."""
        ...

    def submit(self, tx: WithdrawRequest) -> object: ...

    def step(self, worker: WithdrawWorker, adapters: dict[str, ChainAdapter]) -> int:
        """One pass of the runtime; returns the worker's actions."""
        ...

    def settle(self, ready: int, timeout: float = 60.0) -> None:
        """Wait until the worker's view holds `ready` withdrawals (submitted so far)."""
        ...

    def stop_member(self, member: int) -> None: ...

    def agreement(self) -> str | None:
        """What the replicas agree on (None for one local ledger); raises if they differ."""
        ...


class LocalLedger:
    def __init__(self, workdir: Path, cfg: SynodConfig, stack: ExitStack) -> None:
        self.path = workdir / "ledger.db"
        self.ledger = Ledger.from_config(SqliteDatabase(self.path), cfg.chains, cfg.withdraw)
        stack.callback(self.ledger.db.close)
        journal = Journal(workdir / "journal.db")
        stack.callback(journal.close)
        self.consensus = SoloConsensus(self.ledger, journal, AuditLog(self.ledger.db))
        self.watch_db = self.ledger.db
        self.witnesses: list[Witness] = []  # one local writer: nobody else reports

    def member_view(self, member: int) -> Path:
        return self.path

    def submit(self, tx: WithdrawRequest) -> object:
        return self.consensus.submit(tx)

    def step(self, worker: WithdrawWorker, adapters: dict[str, ChainAdapter]) -> int:
        return worker.step()

    def settle(self, ready: int, timeout: float = 60.0) -> None:
        return None  # applied at once

    def stop_member(self, member: int) -> None:
        return None  # no validator

    def agreement(self) -> str | None:
        return None


class ReplicatedLedger:
    def __init__(
        self,
        workdir: Path,
        committee_root: Path,
        cometbft: Path,
        stack: ExitStack,
        progress: Callable[[str], None],
        preexec: Callable[[], None] | None = None,
    ) -> None:
        manifest = Manifest.load(committee_root / "manifest.json")
        directory = manifest.directory()
        operator = Ed25519PrivateKey.generate()  # the demo's API operator key
        members = {m: directory[m].sign_key for m in manifest.ids}
        committee = LedgerCommittee(CHAIN_ID, members, {"api": raw_public(operator)})
        self.replicas = {m: workdir / f"replica-{m}.db" for m in manifest.ids}
        urls = [f"sqlite:///{self.replicas[m]}" for m in manifest.ids]
        progress(f"replicated ledger: {len(members)} CometBFT validators, one per member")
        self.net = LocalNet.create(
            workdir / "validators", str(cometbft), committee, urls, TIMEOUT_COMMIT_MS, preexec
        )
        stack.callback(self.net.close)
        self.net.start_all()
        self.net.wait_height(1, deadline_s=120.0)
        self.stopped: set[int] = set()
        # Member 1's runtime: its replica, its identity key, its validator.
        self.ledger, self.consensus, self.watch_db = self._member(
            committee_root, workdir, WORKER_MEMBER, stack
        )
        rpc = self.net.member(WORKER_MEMBER).rpc
        self._operator = ReplicatedConsensus(rpc, "operator:api", operator, CHAIN_ID)
        self.witnesses = [
            Witness(m, *self._member(committee_root, workdir, m, stack)) for m in WITNESSES
        ]
        self._runner: ReplicaRunner | None = None
        self._egress: list[EgressWitness] = []
        progress(f"replicated ledger: height {rpc.status().height}, every replica in step")

    def _member(
        self, committee_root: Path, workdir: Path, member: int, stack: ExitStack
    ) -> tuple[Ledger, ReplicaConsensus, SqliteDatabase]:
        """A member's replica, its write-backs (signed with its identity key, through its own
        validator, journaled while consensus halts) and its deposit watchers' progress."""
        home = node_dir(committee_root, member)
        passphrase_file = dev_passphrase_path(home)
        assert passphrase_file is not None, "a development committee keeps its passphrase file"
        identity = load_node(home, passphrase_file.read_bytes().strip()).identity
        ledger = Ledger(open_database(str(self.replicas[member])))
        stack.callback(ledger.db.close)
        journal = Journal(workdir / f"journal-{member}.db")
        stack.callback(journal.close)
        rpc = self.net.member(member).rpc
        consensus = ReplicaConsensus(
            ledger,
            ReplicatedConsensus(rpc, f"member:{member}", identity.sign_secret, CHAIN_ID),
            journal,
        )
        watch_db = SqliteDatabase(workdir / f"watch-{member}.db")
        stack.callback(watch_db.close)
        return ledger, consensus, watch_db

    def member_view(self, member: int) -> Path:
        return self.replicas[member]

    def submit(self, tx: WithdrawRequest) -> object:
        return self._operator.submit(tx)

    def step(self, worker: WithdrawWorker, adapters: dict[str, ChainAdapter]) -> int:
        if self._runner is None:
            attester = ProofAttester(self.ledger.db, WORKER_MEMBER, adapters, self.consensus)
            self._runner = ReplicaRunner(self.consensus, worker, attester)
            self._egress = [
                EgressWitness(w.ledger, w.consensus, adapters, worker.policy.confirmations)
                for w in self.witnesses
            ]
        acted = self._runner.run_once()
        for egress in self._egress:
            egress.step()
        return acted

    def settle(self, ready: int, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while len(self.ledger.withdrawals()) < ready:
            if time.monotonic() > end:
                raise RuntimeError(f"the replicated ledger did not apply {ready} requests")
            time.sleep(0.05)

    def stop_member(self, member: int) -> None:
        self.net.stop(member)
        self.stopped.add(member)

    def agreement(self) -> str | None:
        live = [m.member_id for m in self.net.members if m.member_id not in self.stopped]
        rpcs = {i: self.net.member(i).rpc for i in live}
        end = time.monotonic() + 60.0
        while True:  # the same height everywhere, then the same state
            heights = {r.status().height for r in rpcs.values()}
            digests = {r.query("/digest") for r in rpcs.values()}
            if len(heights) == 1 and len(digests) == 1:
                return f"{len(live)} replicas at height {heights.pop()}, same state"
            if time.monotonic() > end:
                raise RuntimeError(f"the replicas differ: heights {heights}, digests {digests}")
            time.sleep(0.2)
