"""The transition worker over the in-process committee: a 3-of-5 committee hands over to a
4-of-7 committee sharing two members, by resharing (same keys) and by a fresh key with a
Bitcoin sweep, while withdrawals queued before, during and after are each paid once; a
member sending an invalid reshare package is named and struck; crashes at random steps
resume with nothing lost. Signing is real (ROAST over FROST among the simulated members);
the chains are the test-edge fakes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from synod.sim.committee import SimCommittee
from synod.state.machine import CONFIRMED
from synod.state.transactions import DepositCredit, SignerSetUpdate
from synod.state.transition import Phase, TransitionRules

from .transition_world import NEW, OLD, World, conserved, genesis, handover


def deposits(world: World) -> None:
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


def test_reshare_handover_keeps_keys_and_pays_everything_once(tmp_path: Path) -> None:
    committee = SimCommittee()
    world = World(tmp_path, committee)
    genesis(world)
    deposits(world)
    old_keys = {s: committee.public[(1, s)].group_public_key() for s in ("bip340", "ed25519")}
    handover(world)
    paid_once(world)
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
    deposits(world)
    old_script = world.btc_script(1)
    handover(world)
    paid_once(world)
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
    deposits(world)
    handover(world)
    paid_once(world)
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
    deposits(world)
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


def test_invalid_signature_shares_strike_and_exclude_a_member(tmp_path: Path) -> None:
    committee = SimCommittee(corrupt={2: "invalid-share"})
    world = World(tmp_path, committee, rules=TransitionRules(strike_limit=1))
    genesis(world)
    deposits(world)
    world.request(4)
    world.run()
    paid_once(world)
    assert set(world.ledger.transitions.strikes()) == {2}  # only the member proven lying
    r = world.ledger.apply(SignerSetUpdate((1, 2, 3, 4, 6), 3, "next committee"))
    assert r.result["excluded"] == [2] and 2 not in r.result["members"]


def test_no_transition_step_while_consensus_is_paused(tmp_path: Path) -> None:
    world = World(tmp_path, SimCommittee())
    world.ledger.apply(SignerSetUpdate(OLD, 3, "genesis"))
    world.consensus.pause()
    assert not world.transition.step()
    assert world.ledger.transitions.transition(1).phase is Phase.DETECTED
    world.consensus.resume()
    assert world.transition.step()
    assert world.ledger.transitions.transition(1).phase is Phase.KEYGEN
