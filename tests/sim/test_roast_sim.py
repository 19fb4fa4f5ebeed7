"""ROAST in the simulator: it finishes within n−t+1 sessions under every strategy, names every
invalid share's sender, survives stalling aggregators and crashes, and is reproducible."""

from __future__ import annotations

from collections import Counter

import coincurve
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synod.crypto import frost
from synod.sim.adversary import STRATEGIES
from synod.sim.roast import RoastRun

SIGNER_STRATEGIES = [s for s in STRATEGIES if not s.endswith("aggregator")]
ATTRIBUTABLE = {"invalid-share", "equivocate", "malformed"}


def verify_independently(run: RoastRun, signature_hex: str) -> bool:
    sig = bytes.fromhex(signature_hex)
    key = run.public.group_public_key(run.tweak)
    if run.public.suite is frost.Ciphersuite.SECP256K1_TR:
        return bool(coincurve.PublicKeyXOnly(key).verify(sig, run.message))
    nacl.signing.VerifyKey(key).verify(run.message, sig)
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 7),
    strategy=st.sampled_from(SIGNER_STRATEGIES),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_finishes_within_bound_and_attributes(
    n: int, strategy: str, seed: int, data: st.DataObject
) -> None:
    t = data.draw(st.integers(2, n), label="t")
    f = data.draw(st.integers(0, n - t), label="f")
    run = RoastRun(t, n, f, strategy, seed, tweak=frost.KEY_PATH)
    result = run.execute()
    assert result.ok, result.failure
    assert result.success_turn_sessions is not None
    assert result.success_turn_sessions <= n - t + 1
    assert result.signature is not None and verify_independently(run, result.signature)
    corrupted = set(result.corrupted)
    assert set(result.culprits) <= corrupted, "an honest signer was blamed"
    if strategy in ATTRIBUTABLE:
        for coord in run.coordinators:
            for sub in coord.subs.values():
                for s in sub.signers:
                    if s in corrupted and s not in coord.pending:
                        assert s in coord.malicious, f"signer {s} answered badly but was not named"


def test_ed25519_signature_verifies_with_libsodium() -> None:
    run = RoastRun(3, 5, 1, "invalid-share", 7, suite=frost.Ciphersuite.ED25519)
    result = run.execute()
    assert result.ok and result.signature is not None
    assert verify_independently(run, result.signature)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("strategy", ["stall-aggregator", "equivocate-aggregator"])
def test_k_bad_aggregators_in_a_row_still_finish(k: int, strategy: str) -> None:
    run = RoastRun(3, 7, k, strategy, seed=11, rotate_timeout=2.0)
    assert set(run.adversary.corrupted) == set(run.schedule.candidates[:k])
    result = run.execute()
    assert result.ok, result.failure
    assert result.virtual_elapsed_s >= 2.0 * k  # each bad turn had to time out
    assert verify_independently(run, result.signature or "")


def test_too_many_corrupted_fails_cleanly_without_a_signature() -> None:
    result = RoastRun(3, 5, 3, "withhold", seed=2, max_time=20.0).execute()
    assert not result.ok and result.signature is None
    assert result.failure and "no signature" in result.failure


def test_same_seed_same_transcript() -> None:
    a = RoastRun(4, 7, 2, "adaptive", seed=99)
    a.execute()
    b = RoastRun(4, 7, 2, "adaptive", seed=99)
    b.execute()
    assert a.net.transcript == b.net.transcript
    c = RoastRun(4, 7, 2, "adaptive", seed=100)
    c.execute()
    assert c.net.transcript != a.net.transcript


def _baseline_steps(seed: int) -> dict[int, int]:
    run = RoastRun(3, 5, 0, "static", seed)
    run.execute()
    return {i: n.steps for i, n in run.nodes.items()}


def test_crash_at_every_step_never_reuses_a_nonce() -> None:
    seed = 3
    for node, steps in _baseline_steps(seed).items():
        for step in range(1, steps + 1):
            run = RoastRun(3, 5, 0, "static", seed)
            run.crash_at_step(node, step, restart_after=1.0)
            result = run.execute()
            assert result.ok, (node, step, result.failure)
            uses = [u for per_node in run.nonce_uses.values() for u in per_node]
            assert not [u for u, c in Counter(uses).items() if c > 1], (node, step)
            shares = run.share_commitments()
            assert len(shares) == len(set(shares)), f"a commitment signed twice ({node}, {step})"
            assert verify_independently(run, result.signature or "")


def test_lossy_links_and_a_healed_partition() -> None:
    # 10% loss: repeated offers on every aggregator turn get through eventually.
    lossy = RoastRun(3, 5, 0, "static", seed=21, loss=0.1, rotate_timeout=2.0)
    result = lossy.execute()
    assert result.ok and verify_independently(lossy, result.signature or "")
    # The aggregator is cut off from everyone for its whole turn; the next one finishes.
    run = RoastRun(3, 5, 0, "static", seed=22, rotate_timeout=2.0)
    first = run.schedule.candidates[0]
    others = set(run.schedule.committee) - {first}
    run.net.partition({first}, others)
    run.net.at(3.0, run.net.heal)
    result = run.execute()
    assert result.ok and result.virtual_elapsed_s >= 2.0
    assert any(e[1] == "drop-partition" for e in run.net.transcript)
    assert verify_independently(run, result.signature or "")
