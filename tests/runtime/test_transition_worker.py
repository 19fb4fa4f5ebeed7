"""The transition worker over the in-process committee: a 3-of-5 committee hands over to a
4-of-7 committee sharing two members, by resharing (same keys) and by a fresh key with a
Bitcoin sweep, while withdrawals queued before, during and after are each paid once; a
member sending an invalid reshare package is named and struck; crashes at random steps
resume with nothing lost. Signing is real (ROAST over FROST among the simulated members);
the chains are the test-edge fakes."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.chains.solana.address import solana_address
from synod.crypto import frost
from synod.runtime.consensus import LocalConsensus
from synod.runtime.journal import Journal
from synod.runtime.transition import TransitionPolicy, TransitionWorker
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.sim.committee import SimCommittee, message_digest
from synod.state.db import SqliteDatabase
from synod.state.machine import BALANCE_FIELDS, CONFIRMED, Ledger
from synod.state.transactions import DepositCredit, SignerSetUpdate, WithdrawRequest
from synod.state.transition import Phase

from .fakes import FakeChain

OLD, NEW = (1, 2, 3, 4, 5), (4, 5, 6, 7, 8, 9, 10)
POLICY = WorkerPolicy(max_in_flight_per_chain=2, confirmations={"btc": 1, "sol": 1}, backoff_s=0)


@dataclass
class World:
    path: Path
    committee: SimCommittee
    mode: str = "reshare"
    ledger: Ledger = field(init=False)
    consensus: LocalConsensus = field(init=False)
    chains: dict[str, FakeChain] = field(init=False)
    withdraw: WithdrawWorker = field(init=False)
    transition: TransitionWorker = field(init=False)
    requests: int = 0

    def __post_init__(self) -> None:
        self.open()

    def open(self) -> None:
        """(Re)start the node's processes from what is on disk; the members keep their shares."""
        self.ledger = Ledger(SqliteDatabase(self.path / "ledger.db"))
        self.consensus = LocalConsensus(self.ledger, Journal(self.path / "journal.db"))
        self.chains = {
            c: FakeChain(c, self.path / f"chain-{c}.json", confirm_after=1) for c in ("btc", "sol")
        }
        signers = {
            "btc": self.committee.signer("bip340", message_digest, frost.KEY_PATH),
            "sol": self.committee.signer("ed25519", message_digest),
        }
        self.withdraw = WithdrawWorker(self.ledger, self.consensus, signers, self.chains, POLICY)
        self.transition = TransitionWorker(
            self.ledger,
            self.consensus,
            self.committee,
            self.address_for,
            TransitionPolicy(frost_handover=self.mode, chains=("btc", "sol")),
        )

    def address_for(self, chain: str, scheme: str, key: bytes) -> dict[str, str]:
        if chain == "sol":
            return {"address": solana_address(key)}
        output = self.committee.public_for(scheme, key).group_public_key(frost.KEY_PATH)
        return {
            "address": p2tr_address(output, Network.REGTEST),
            "script": p2tr_script(output).hex(),
        }

    def btc_script(self, epoch: int) -> str:
        output = self.committee.public[(epoch, "bip340")].group_public_key(frost.KEY_PATH)
        return p2tr_script(output).hex()

    def request(self, n: int) -> None:
        for i in range(n):
            self.requests += 1
            chain = "btc" if i % 2 == 0 else "sol"
            asset, amount = ("BTC", 20_000) if chain == "btc" else ("SOL", 10**8)
            self.ledger.apply(
                WithdrawRequest(f"r{self.requests}", chain, asset, f"to{self.requests}", amount)
            )

    def step(self) -> None:
        self.transition.step()
        self.withdraw.step()
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
    world.ledger.apply(SignerSetUpdate(OLD, 3, "genesis"))
    world.run()
    assert world.ledger.transitions.active_epoch() == 1
    script = world.btc_script(1)
    for i in range(6):
        world.ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{i + 1:064x}:0", 1, script))
    world.ledger.apply(DepositCredit("sol", "SOL", 5 * 10**9, "sol-deposit", 1))


def paid_once(world: World) -> None:
    for w in world.ledger.withdrawals():
        assert w.status == CONFIRMED, w
    for chain in world.chains.values():
        for wid, txids in chain.txids_by_withdrawal().items():
            assert len(txids) == 1, f"{wid} paid by {len(txids)} transactions"
    conserved(world.ledger)


def handover(world: World) -> None:
    """Withdrawals before, during and after a 3-of-5 -> 4-of-7 transition."""
    world.request(4)
    for _ in range(3):
        world.step()  # some confirmed, some in flight when the transition opens
    world.ledger.apply(SignerSetUpdate(NEW, 4, "handover"))
    saw_window = False
    for _ in range(300):
        t = world.ledger.transitions.transition(2)
        if t.phase in (Phase.KEY_READY, Phase.MIGRATING) and not saw_window:
            saw_window = True
            world.request(2)  # during the window: they wait, they are not lost
        if t.phase is Phase.ACTIVE:
            break
        world.step()
    assert saw_window
    world.request(4)  # after
    world.run()
    paid_once(world)


def test_reshare_handover_keeps_keys_and_pays_everything_once(tmp_path: Path) -> None:
    committee = SimCommittee()
    world = World(tmp_path, committee)
    genesis(world)
    old_keys = {s: committee.public[(1, s)].group_public_key() for s in ("bip340", "ed25519")}
    handover(world)
    t = world.ledger.transitions.transition(2)
    assert t.phase is Phase.ACTIVE and t.members == NEW and t.threshold == 4
    assert t.switch_window_ms is not None and t.switch_window_ms >= 0
    for s, key in old_keys.items():
        assert committee.public[(2, s)].group_public_key() == key  # same group keys
        assert committee.public[(2, s)].min_signers == 4
    # Nothing moved: the UTXOs still pay the same script, no migration was made.
    assert all(u["script"] == world.btc_script(1) for u in world.ledger.utxos())
    assert not world.ledger.select_withdrawals("purpose = 'migration'", (), 10)
    # Old shares erased everywhere, only after the new committee is ACTIVE.
    assert not any(committee.holds(m, 1) for m in OLD)
    assert all(committee.holds(m, 2) for m in NEW)
    epochs = {w.key_epoch for w in world.ledger.withdrawals()}
    assert epochs == {1, 2}


def test_fresh_key_sweeps_bitcoin_and_moves_solana(tmp_path: Path) -> None:
    committee = SimCommittee()
    world = World(tmp_path, committee, mode="fresh")
    genesis(world)
    old_script = world.btc_script(1)
    handover(world)
    new_script = world.btc_script(2)
    assert new_script != old_script
    unspent = world.ledger.utxos()
    assert unspent and all(u["script"] == new_script for u in unspent)
    migrations = world.ledger.select_withdrawals("purpose = 'migration'", (), 100)
    assert {m.chain for m in migrations} == {"btc", "sol"}
    assert all(m.status == CONFIRMED and m.key_epoch == 1 for m in migrations)
    sol = world.ledger.lots("sol", "SOL")
    assert sum(lot["remaining"] for lot in sol if "migration" in lot["lot_id"]) == sum(
        lot["remaining"] for lot in sol
    )
    assert not any(committee.holds(m, 1) for m in OLD)


def test_invalid_reshare_package_is_named_and_handover_completes_without_it(
    tmp_path: Path,
) -> None:
    committee = SimCommittee(liars={2})
    world = World(tmp_path, committee)
    genesis(world)
    handover(world)
    t = world.ledger.transitions.transition(2)
    assert t.culprits == (2,) and t.attempt == 1
    assert world.ledger.transitions.strikes() == {2: 1}
    failed = [r for r in committee.records if r.epoch == 2 and not r.ok]
    assert failed and all(r.culprits == [2] for r in failed)
    assert (
        committee.public[(2, "bip340")].group_public_key()
        == (
            committee.public_for("bip340", committee.public[(2, "bip340")].group_public_key())
        ).group_public_key()
    )


@pytest.mark.parametrize("seed", range(6))
def test_crash_at_a_random_step_resumes_with_nothing_lost(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    committee = SimCommittee(seed=seed + 1)
    world = World(tmp_path, committee, mode="fresh" if seed % 2 else "reshare")
    genesis(world)
    world.request(4)
    world.ledger.apply(SignerSetUpdate(NEW, 4, "handover"))
    for _ in range(300):
        if world.ledger.transitions.open_transition() is None and all(
            w.status == CONFIRMED for w in world.ledger.withdrawals()
        ):
            break
        if rng.random() < 0.3:
            world.open()  # the process died here: everything is rebuilt from disk
        world.transition.step()
        if rng.random() < 0.3:
            world.open()
        world.withdraw.step(max_actions=rng.randint(1, 3))
        conserved(world.ledger)
    paid_once(world)
    assert world.ledger.transitions.transition(2).phase is Phase.ACTIVE
