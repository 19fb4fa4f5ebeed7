"""A node's ledger, workers and a simulated committee that hands over, for the transition
tests on the fakes and on the real engines: `open()` rebuilds every process from disk (a
crash), the members keep their shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.chains.solana.address import solana_address
from synod.crypto import frost
from synod.runtime.consensus import SoloConsensus
from synod.runtime.interfaces import ChainAdapter
from synod.runtime.journal import Journal
from synod.runtime.transition import TransitionPolicy, TransitionWorker
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.sim.committee import SimCommittee, message_digest
from synod.state.db import SqliteDatabase
from synod.state.machine import BALANCE_FIELDS, CONFIRMED, Ledger
from synod.state.transactions import SignerSetUpdate, WithdrawRequest
from synod.state.transition import Phase, TransitionRules

from .fakes import FakeChain

OLD, NEW = (1, 2, 3, 4, 5), (4, 5, 6, 7, 8, 9, 10)
POLICY = WorkerPolicy(max_in_flight_per_chain=2, confirmations={"btc": 1, "sol": 1}, backoff_s=0)


AMOUNTS = {"btc": ("BTC", 20_000), "sol": ("SOL", 10**8), "eth": ("ETH", 10**15)}


@dataclass
class World:
    path: Path
    committee: SimCommittee
    mode: str = "reshare"
    # chain -> (scheme, messages to sign, tweak); adapters made on every (re)start
    messages: dict[str, tuple[str, Callable[[Any], Any], frost.TaprootTweak | None]] = field(
        default_factory=lambda: {
            "btc": ("bip340", message_digest, frost.KEY_PATH),
            "sol": ("ed25519", message_digest, None),
        }
    )
    make_adapters: Callable[[Path], dict[str, ChainAdapter]] | None = None
    network: Network = Network.REGTEST
    policy: WorkerPolicy = POLICY
    after_step: Callable[[], None] | None = None  # e.g. mine a block
    rules: TransitionRules = field(default_factory=TransitionRules)
    nonce_chains: tuple[str, ...] = ()
    recipient: Callable[[str, int], str] = lambda chain, n: f"to{n}"
    ledger: Ledger = field(init=False)
    consensus: SoloConsensus = field(init=False)
    chains: dict[str, Any] = field(init=False)
    withdraw: WithdrawWorker = field(init=False)
    transition: TransitionWorker = field(init=False)
    requests: int = 0

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        """(Re)start the node's processes from what is on disk; the members keep their shares."""
        self.ledger = Ledger(
            SqliteDatabase(self.path / "ledger.db"),
            rules=self.rules,
            nonce_chains=self.nonce_chains,
        )
        self.consensus = SoloConsensus(self.ledger, Journal(self.path / "journal.db"))
        if self.make_adapters is None:
            self.chains = {
                c: FakeChain(c, self.path / f"chain-{c}.json", confirm_after=1)
                for c in self.messages
            }
        else:
            self.chains = dict(self.make_adapters(self.path))
        signers: dict[str, Any] = {
            chain: self.committee.ecdsa_signer(message_for)
            if scheme == "ecdsa"
            else self.committee.signer(scheme, message_for, tweak)
            for chain, (scheme, message_for, tweak) in self.messages.items()
        }
        self.withdraw = WithdrawWorker(
            self.ledger, self.consensus, signers, self.chains, self.policy
        )
        self.transition = TransitionWorker(
            self.ledger,
            self.consensus,
            self.committee,
            self.address_for,
            TransitionPolicy(
                frost_handover=self.mode,
                chains=tuple(self.messages),
                schemes=self.committee.schemes,
            ),
        )

    def address_for(self, chain: str, scheme: str, key: bytes) -> dict[str, str]:
        if chain == "sol":
            return {"address": solana_address(key)}
        output = self.committee.public_for(scheme, key).group_public_key(frost.KEY_PATH)
        return {
            "address": p2tr_address(output, self.network),
            "script": p2tr_script(output).hex(),
        }

    def btc_script(self, epoch: int) -> str:
        output = self.committee.public[(epoch, "bip340")].group_public_key(frost.KEY_PATH)
        return p2tr_script(output).hex()

    def request(self, n: int) -> None:
        chains = list(self.messages)
        for i in range(n):
            self.requests += 1
            chain = chains[i % len(chains)]
            asset, amount = AMOUNTS[chain]
            to = self.recipient(chain, self.requests)
            self.ledger.apply(WithdrawRequest(f"r{self.requests}", chain, asset, to, amount))

    def step(self) -> None:
        self.transition.step()
        self.withdraw.step()
        if self.after_step is not None:
            self.after_step()
        conserved(self.ledger)

    def run(self, until: int = 200) -> None:
        for _ in range(until):
            if self.ledger.transitions.open_transition() is None and all(
                w.status == CONFIRMED for w in self.ledger.withdrawals()
            ):
                return
            self.step()
        raise AssertionError("did not settle")


def conserved(ledger: Ledger) -> None:
    for key, b in ledger.balances().items():
        assert b["deposited"] == sum(b[k] for k in BALANCE_FIELDS[1:]), (key, b)


def genesis(world: World) -> None:
    """Committee epoch 1 (3-of-5) through the same pipeline."""
    world.ledger.apply(SignerSetUpdate(OLD, 3, "genesis"))
    world.run()
    assert world.ledger.transitions.active_epoch() == 1


def handover(world: World, during: int = 2, after: int = 4, before: int = 4) -> None:
    """Withdrawals before, during and after a 3-of-5 -> 4-of-7 transition, until all settle."""
    world.request(before)
    for _ in range(3):
        world.step()  # some confirmed, some in flight when the transition opens
    world.ledger.apply(SignerSetUpdate(NEW, 4, "handover"))
    saw_window = False
    for _ in range(300):
        t = world.ledger.transitions.transition(2)
        if t.phase in (Phase.KEY_READY, Phase.MIGRATING) and not saw_window:
            saw_window = True
            world.request(during)  # during the window: they wait, they are not lost
        if t.phase is Phase.ACTIVE:
            break
        world.step()
    assert saw_window
    world.request(after)
    world.run()
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED, w
