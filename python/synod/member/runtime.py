"""The member's runtime: what a member does on every block of its replica (seed 000 §5.2, §8.1).

`synod member run` starts it as its `runtime` child when the configuration names chains
(``[chains.<chain>]``; the replicated ledger). It opens the member's keystore (the passphrase
comes through the environment, as for the signer node) for two keys: the identity key that
signs the member's write-backs, and the TLS key with which it calls its own signer node's
control service (the node admits its own member's certificate, and no other member's).

It reads the public side of each configured key from its own node (``Status``: the key id the
DKG made) and waits, saying so, until the node holds it. Then, each wake-up:

- the withdraw worker over the member's replica (`ReplicaRunner`: observe the chain, drain the
  journal when blocks move, vote on pending proofs, one pass): every member runs it, and the
  same write-back from several members is one transaction id, applied once; signing asks only
  this member's node, and the members meet in the ROAST session the agreed `StartSign` names;
- the deposit watchers, one per chain, reporting as this member: a deposit is credited when a
  quorum of members has reported the same one.

A replica that is behind is only slower: the worker acts on what its replica holds, and a
write-back the ledger already has is a duplicate, not an error. A chain node that does not
answer is logged and retried on the next wake-up; the runtime itself never stops on one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from synod.config import SynodConfig, load_config
from synod.consensus.client import CometRpc, ReplicatedConsensus
from synod.consensus.committee import Committee
from synod.member.config import ChainConfig, MemberConfig
from synod.node.committee import NodeMaterial
from synod.node.control import ControlClient, ControlError, ControlTLS
from synod.node.enrol import LEDGER_COMMITTEE
from synod.node.keyring import PublicKey
from synod.runtime.attest import ProofAttester
from synod.runtime.interfaces import ChainAdapter, Signer
from synod.runtime.journal import Journal
from synod.runtime.node_signer import NodeSigner
from synod.runtime.replica import ReplicaConsensus, ReplicaRunner
from synod.runtime.watchers.base import Block, BlockSource, DepositWatcher, WatcherLoop
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase, open_database
from synod.state.machine import Ledger
from synod.state.watch_store import WatchStore

log = logging.getLogger("synod.member.runtime")
WAKE_S = 0.25  # between wake-ups (CometBFT makes a block every second or so)
HALT_AFTER_S = 10.0  # no block for this long: consensus halted, journal the write-backs. A
# stopped validator's turn to propose already costs CometBFT's timeout_propose (3 s) plus a
# round, which is no halt: pausing then would hold every write-back until the next block.
KEY_WAIT_LOG_S = 30.0
JOURNAL, WATCH = "journal.db", "watch.db"


class RuntimeStartError(RuntimeError):
    """The runtime cannot serve a chain as configured (one line)."""


def chain_url(value: str) -> str:
    """A chain node's URL from the configuration: as written, or ``env:NAME``'s value."""
    if value.startswith("env:"):
        name = value[4:]
        found = os.environ.get(name)
        if not found:
            raise RuntimeStartError(f"the environment variable {name} is not set")
        return found
    return value


@dataclass
class ChainParts:
    adapter: ChainAdapter
    signer: Signer
    deposits: BlockSource


def bitcoin_parts(
    chain: ChainConfig,
    key: PublicKey,
    signer: Callable[..., NodeSigner],
    is_ours: Callable[[str], bool],
) -> ChainParts:
    from synod.chains.bitcoin.adapter import BitcoinAdapter
    from synod.chains.bitcoin.address import Network, p2tr_script
    from synod.chains.bitcoin.rpc import BitcoinRpc
    from synod.runtime.watchers.bitcoin import BitcoinDeposits

    if key.scheme != "bip340":
        raise RuntimeStartError(f"chains.btc.key: {key.key_id!r} is a {key.scheme} key, not BIP340")
    if chain.cafile is not None and not chain.cafile.is_file():
        raise RuntimeStartError(f"chains.btc.cafile: no file at {chain.cafile}")
    cafile = None if chain.cafile is None else str(chain.cafile)
    rpc = BitcoinRpc(chain_url(chain.rpc), timeout=20, cafile=cafile)
    adapter = BitcoinAdapter(rpc, Network[chain.network.upper()])
    script = p2tr_script(key.verifying_key).hex()
    return ChainParts(
        adapter, signer(adapter.sighashes), BitcoinDeposits(rpc, [script], ours=is_ours)
    )


BUILDERS = {"btc": bitcoin_parts}

# TEST ONLY faults of a member's runtime (``[member] test_fault``, `config.RUNTIME_FAULTS`), to
# show that the ledger acts on no single member's word: ``fake-deposits`` reports, beside each
# block's real deposits, one that never happened (an outpoint of an all-zero txid).


class FakeDeposits:
    """TEST ONLY: `source` with a deposit that does not exist added to every block."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source
        self.chain = source.chain

    def tip(self) -> int:
        return self.source.tip()

    def block_hash(self, height: int) -> str | None:
        return self.source.block_hash(height)

    def block(self, height: int) -> Block:
        """Beside a block's first real deposit, a twin paying the same script from a
        transaction that does not exist (a block without deposits gets none)."""
        block = self.source.block(height)
        if not block.deposits:
            return block
        real = block.deposits[0]
        fake = replace(real, amount=21 * 10**14, ref=f"{'0' * 64}:{height}", min_depth=0)
        return replace(block, deposits=(*block.deposits, fake))


class MemberRuntime:
    """One member's runtime over its replica; `step` is one wake-up."""

    def __init__(
        self,
        config: MemberConfig,
        material: NodeMaterial,
        synod: SynodConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.member_id = config, material.member_id
        self.synod = synod or load_config(env={})
        self.clock = clock
        committee = Committee.load(config.directory / LEDGER_COMMITTEE)
        d = config.directory
        self.ledger = Ledger(open_database(config.ledger.db))
        self.journal = Journal(d / JOURNAL)
        self.watch = WatchStore(SqliteDatabase(d / WATCH))  # the watchers' own progress
        me = material.manifest.member(self.member_id)
        self.control = ControlClient(
            str(me.endpoint), ControlTLS.own(material.tls, self.member_id), timeout=10.0
        )
        self.consensus = ReplicaConsensus(
            self.ledger,
            ReplicatedConsensus(
                CometRpc(config.ledger.rpc_url, timeout_s=10.0),
                f"member:{self.member_id}",
                material.identity.sign_secret,
                committee.chain_id,
            ),
            self.journal,
            halt_after_s=HALT_AFTER_S,
        )
        n, t = len(material.manifest.members), material.manifest.threshold
        self._turn = self.synod.timeouts.aggregator_turn_s(n, t)
        self._session = self.synod.timeouts.session_limit_s(n, t)
        policy = WorkerPolicy.from_config(self.synod)
        overrides = {c.chain: c.confirmations for c in config.runtime if c.confirmations}
        self.policy = replace(policy, confirmations={**policy.confirmations, **overrides})
        self.adapters: dict[str, ChainAdapter] = {}
        self.signers: dict[str, Signer] = {}
        self.watchers: list[DepositWatcher] = []
        self.runner: ReplicaRunner | None = None
        self.loop = WatcherLoop([])
        self._said = ("", 0.0)

    def close(self) -> None:
        self.control.close()
        self.journal.close()
        self.watch.db.close()
        self.ledger.db.close()

    # ------------------------------------------------------------------ keys
    def _attach(self) -> bool:
        """Build every configured chain once this member's node holds its key; True when all
        are attached."""
        missing = [c for c in self.config.runtime if c.chain not in self.adapters]
        if not missing:
            return True
        try:
            keys: dict[str, PublicKey] = self.control.status()["keys"]
        except ControlError as err:
            log.info("own signer node not answering yet (%s)", err.code)
            return False
        for chain in missing:
            key = keys.get(chain.key_id)
            if key is None:
                continue
            try:
                parts = BUILDERS[chain.chain](chain, key, self._signer(key), self.ledger.has_utxo)
            except RuntimeStartError as err:  # e.g. the node's certificate not there yet
                self._say(f"{chain.chain}: cannot serve it yet: {err}")
                continue
            self.adapters[chain.chain] = parts.adapter
            self.signers[chain.chain] = parts.signer
            confirmations = self.policy.confirmations[chain.chain]
            deposits = parts.deposits
            if self.config.test_fault == "fake-deposits":
                log.warning("TEST ONLY: %s: reporting deposits that never happened", chain.chain)
                deposits = FakeDeposits(deposits)
            self.watchers.append(
                DepositWatcher(
                    deposits, self.consensus, self.watch, confirmations, chain.from_height
                )
            )
            log.info("%s: serving key %s", chain.chain, chain.key_id)
        waiting = [c.key_id for c in self.config.runtime if c.key_id not in keys]
        if waiting:
            self._say(f"waiting for this member's node to hold {waiting} (run the DKG)")
        return all(c.chain in self.adapters for c in self.config.runtime)

    def _say(self, message: str) -> None:
        """A reason for waiting, once per `KEY_WAIT_LOG_S` for the same reason."""
        now = self.clock()
        if message != self._said[0] or now - self._said[1] >= KEY_WAIT_LOG_S:
            self._said = (message, now)
            log.warning(message)

    def _signer(self, key: PublicKey) -> Callable[..., NodeSigner]:
        def make(messages_for: Callable[..., bytes | list[bytes]]) -> NodeSigner:
            return NodeSigner(
                {self.member_id: self.control},
                key.key_id,
                key.scheme,
                key.verifying_key,
                messages_for,
                rotate_timeout=self._turn,
                timeout=self._session,
            )

        return make

    # ------------------------------------------------------------------ wake-ups
    def step(self) -> int:
        """One wake-up; returns the worker's actions and the deposits reported."""
        if self.runner is None:
            if not self._attach():
                return 0
            worker = WithdrawWorker(
                self.ledger, self.consensus, self.signers, self.adapters, self.policy
            )
            attester = ProofAttester(self.ledger.db, self.member_id, self.adapters, self.consensus)
            self.runner = ReplicaRunner(self.consensus, worker, attester)
            self.loop = WatcherLoop(self.watchers)
            log.info("runtime running: %s", ", ".join(sorted(self.adapters)))
        acted = self.runner.run_once()
        if not self.consensus.paused:
            acted += self.loop.run_once()
        return acted

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # a node or a replica read that failed: the next wake-up
                log.exception("runtime wake-up failed; next in %.2f s", WAKE_S)
            stop.wait(WAKE_S)
