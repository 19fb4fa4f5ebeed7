"""FROST benchmark rows: a whole in-process DKG and one signature, per ciphersuite and size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from synod.bench.table import Row, timed
from synod.crypto import frost

DEFAULT_SIZES = ((3, 5), (11, 15), (67, 100))
SUITE_NAMES = {
    frost.Ciphersuite.SECP256K1_TR: "frost-secp256k1-tr",
    frost.Ciphersuite.ED25519: "frost-ed25519",
}
MESSAGE = bytes(range(32))


def _sign_and_verify(
    keys: dict[int, frost.KeyPackage], public: frost.PublicKeyPackage, signers: list[int]
) -> None:
    sig = frost.local_sign(keys, public, MESSAGE, signers)
    frost.verify(public.suite, public.group_public_key(), MESSAGE, sig)


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
            seconds, reps = timed(sign, 3 if n > 50 else 10)
            rows.append(Row(name, "sign+aggregate+verify", f"{t}/{n}", seconds, reps))
    return rows
