"""The DKG's last step evaluates commitments by Horner's rule at small identifiers
(`part3_horner` in the core) instead of the crate's full scalar multiplications. It must
conclude exactly what the crate's own `dkg::part3` concludes: the same key and public key
packages from honest packages, and the same error naming the same sender from corrupted
ones. Each case runs both and compares."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synod.crypto import frost
from synod.crypto.errors import CryptoError, InvalidPackageError

SUITES = [frost.Ciphersuite.SECP256K1_TR, frost.Ciphersuite.ED25519]

Round1 = dict[int, frost.DkgRound1Package]
Round2 = dict[int, frost.DkgRound2Package]


def _ceremony(
    suite: frost.Ciphersuite, t: int, n: int
) -> tuple[dict[int, frost.DkgRound2Secret], Round1, dict[int, Round2]]:
    """Rounds 1 and 2 for everyone: (round-2 secrets, round-1 packages, {to: {from: share}})."""
    r1 = {i: frost.dkg_part1(suite, i, n, t) for i in range(1, n + 1)}
    packages = {i: p for i, (_, p) in r1.items()}
    secrets: dict[int, frost.DkgRound2Secret] = {}
    inbox: dict[int, Round2] = {i: {} for i in r1}
    for i, (s1, _) in r1.items():
        secrets[i], out = frost.dkg_part2(s1, {j: p for j, p in packages.items() if j != i})
        for to, share in out.items():
            inbox[to][i] = share
    return secrets, packages, inbox


def _both(secret: frost.DkgRound2Secret, round1: Round1, round2: Round2) -> tuple[object, object]:
    """Each implementation's outcome: the packages' bytes, or the error's type and culprits."""

    def run(crate: bool) -> object:
        try:
            kp, pkp = frost.dkg_part3(secret, round1, round2, crate_checks=crate)
        except CryptoError as err:
            return type(err), err.culprits
        return kp.raw, pkp.raw

    return run(False), run(True)


def _others(packages: Round1, me: int) -> Round1:
    return {j: p for j, p in packages.items() if j != me}


@settings(max_examples=12, deadline=None)
@given(
    suite=st.sampled_from(SUITES),
    size=st.integers(2, 7).flatmap(lambda n: st.tuples(st.integers(2, n), st.just(n))),
)
def test_honest_packages_give_the_crates_result(
    suite: frost.Ciphersuite, size: tuple[int, int]
) -> None:
    t, n = size
    secrets, packages, inbox = _ceremony(suite, t, n)
    publics = set()
    for me in secrets:
        ours, crates = _both(secrets[me], _others(packages, me), inbox[me])
        assert isinstance(ours, tuple) and isinstance(ours[0], bytes)
        assert ours == crates
        publics.add(ours[1])
    assert len(publics) == 1


@pytest.mark.parametrize("suite", SUITES)
def test_corrupted_shares_name_the_same_sender(suite: frost.Ciphersuite) -> None:
    rng = random.Random(7)
    t, n = 3, 6
    secrets, packages, inbox = _ceremony(suite, t, n)
    for me in secrets:
        senders = sorted(inbox[me])
        bad = sorted(rng.sample(senders, rng.randint(1, 3)))
        round2 = dict(inbox[me])
        for j in bad:
            # j's share meant for another participant: well formed, wrong for `me`.
            other = next(k for k in inbox if k not in (me, j))
            round2[j] = inbox[other][j]
        ours, crates = _both(secrets[me], _others(packages, me), round2)
        assert ours == crates == (InvalidPackageError, (bad[0],))


@pytest.mark.parametrize("suite", SUITES)
def test_corrupted_commitments_name_the_same_sender(suite: frost.Ciphersuite) -> None:
    t, n = 3, 5
    secrets, packages, inbox = _ceremony(suite, t, n)
    me, liar = 2, 4
    # The liar's round-1 package swapped for another polynomial's (same shape, valid proof).
    _, swapped = frost.dkg_part1(suite, liar, n, t)
    round1 = {**_others(packages, me), liar: swapped}
    ours, crates = _both(secrets[me], round1, inbox[me])
    assert ours == crates == (InvalidPackageError, (liar,))


@pytest.mark.parametrize("suite", SUITES)
def test_missing_and_extra_packages_fail_alike(suite: frost.Ciphersuite) -> None:
    t, n = 2, 4
    secrets, packages, inbox = _ceremony(suite, t, n)
    me = 1
    round1, round2 = _others(packages, me), inbox[me]
    missing = {j: p for j, p in round2.items() if j != 3}
    swapped_ids = {**{j: p for j, p in round1.items() if j != 3}, 1: packages[1]}
    for r1, r2 in ((round1, missing), (swapped_ids, round2), ({}, {})):
        ours, crates = _both(secrets[me], r1, r2)
        assert ours == crates
        assert isinstance(ours, tuple) and issubclass(ours[0], CryptoError)  # type: ignore[arg-type]
