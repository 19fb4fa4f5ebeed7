"""FROST benchmark rows: a whole in-process DKG and one signature, per ciphersuite and size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from synod.bench.table import Row, timed
from synod.crypto import frost, import_export

DEFAULT_SIZES = ((3, 5), (11, 15), (67, 100))
SIGNER_SIZES = ((67, 100), (800, 1000))
SIGNER_ROUND2 = "roast signer round 2 (receive package + sign)"
SUITE_NAMES = {
    frost.Ciphersuite.SECP256K1_TR: "frost-secp256k1-tr",
    frost.Ciphersuite.ED25519: "frost-ed25519",
}
MESSAGE = bytes(range(32))


def _sign_and_verify(
    keys: dict[int, frost.KeyPackage], public: frost.PublicKeyPackage, signers: list[int]
) -> None:
    sig = frost.local_sign(keys, public, MESSAGE, signers)
    public.verify(MESSAGE, sig)


def frost_rows(
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Row]:
    rows: list[Row] = []
    for suite, name in SUITE_NAMES.items():
        for t, n in sizes:
            progress(f"{name} DKG {t}/{n}")
            seconds, reps = timed(partial(frost.local_dkg, suite, t, n), 1 if n > 50 else 5)
            rows.append(Row(name, "dkg (all parties)", f"{t}/{n}", seconds, reps))
            keys, public = frost.local_dkg(suite, t, n)
            progress(f"{name} sign {t}/{n}")
            sign = partial(_sign_and_verify, keys, public, list(range(1, t + 1)))
            seconds, reps = timed(sign, 5 if n > 50 else 50)
            rows.append(Row(name, "sign+aggregate+verify", f"{t}/{n}", seconds, reps))
    return rows


def signer_rows(
    sizes: Sequence[tuple[int, int]] = SIGNER_SIZES,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Row]:
    """One ROAST signer's round 2, as `RoastSigner` runs it: the coordinator's signing
    package arrives as bytes (shape check, one parse), the signer compares its own
    commitment, takes its stored nonces and signs. Keys from the dealer (`split`), since
    only the signing step is timed."""
    rows: list[Row] = []
    for suite, name in SUITE_NAMES.items():
        for t, n in sizes:
            progress(f"{name} signer round 2 {t}/{n}")
            keys, public = import_export.split(suite, n, t)
            round1 = {i: frost.commit(keys[i]) for i in range(1, t + 1)}
            package = frost.signing_package({i: c for i, (_, c) in round1.items()}, MESSAGE)
            wire, stored, mine = package.to_bytes(), round1[1][0].raw, round1[1][1]
            committee = public.identifiers

            def round2(
                key: frost.KeyPackage = keys[1],
                wire: bytes = wire,
                stored: bytes = stored,
                mine: frost.SigningCommitments = mine,
                committee: tuple[int, ...] = committee,
            ) -> bytes:
                received = frost.receive_signing_package(wire, key, committee)
                if received.message != MESSAGE or received.commitment(key.identifier) != mine:
                    raise AssertionError("package does not match")
                nonces = frost.SigningNonces(key.suite, stored)
                return frost.sign(received, nonces, key).to_bytes()

            seconds, reps = timed(round2, 20 if t > 100 else 50)
            rows.append(Row(name, SIGNER_ROUND2, f"{t}/{n}", seconds, reps))
    return rows
