"""CGGMP21 (threshold ECDSA) benchmark rows, all parties run in-process on one thread.

Aux info generation uses the TEST-ONLY primes pool (fresh primes take ~30 s per party
and would swamp every other figure); the same file feeds the Rust baseline
``rust/examples/bench_ecdsa.rs``, which prints rows with identical labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from synod.bench.table import Row, timed
from synod.crypto import ecdsa

ECDSA_PRIMES = Path(__file__).resolve().parents[3] / "tests" / "data" / "cggmp_primes.json"
DEFAULT_SIZES = ((2, 3), (3, 5))
SUITE = "cggmp21-secp256k1"
DIGEST = hashlib.sha256(b"synod bench").digest()
_T = TypeVar("_T")


def _extend(out: list[_T], make: Callable[[], list[_T]]) -> None:
    """Keep what a timed call produced (an aux info run is too slow to repeat for its output)."""
    out.extend(make())


def _one(make: Callable[[], _T]) -> list[_T]:
    return [make()]


def _sign_from_presignatures(pool: list[list[ecdsa.Presignature]], public_key: bytes) -> None:
    """Issue every partial signature, combine, verify (``combine`` verifies), recovery id."""
    partials = [p.sign(DIGEST) for p in pool.pop()]
    ecdsa.combine(partials, DIGEST, public_key)


def ecdsa_rows(
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    progress: Callable[[str], None] = lambda _: None,
    primes: Sequence[ecdsa.Primes] | None = None,
) -> list[Row]:
    """Aux info, keygen, presigning, signing from presignatures, interactive signing."""
    pool_primes = list(primes) if primes is not None else ecdsa.load_primes(ECDSA_PRIMES)
    rows: list[Row] = []
    for t, n in sizes:
        params = f"{t}/{n}"
        if len(pool_primes) < n:
            raise ValueError(f"need {n} sets of primes, have {len(pool_primes)}")
        progress(f"cggmp aux info {params}")
        aux: list[ecdsa.AuxInfo] = []
        seconds, reps = timed(partial(_extend, aux, partial(ecdsa.local_aux_info, n, pool_primes)))
        rows.append(Row(SUITE, "aux info (pregenerated primes)", params, seconds, reps))

        progress(f"cggmp keygen {params}")
        seconds, reps = timed(partial(ecdsa.local_incomplete_keygen, t, n), 5)
        rows.append(Row(SUITE, "keygen", params, seconds, reps))
        shares = ecdsa.local_keygen(t, n, aux)
        signers = list(range(t))
        pk = shares[0].public_key

        progress(f"cggmp presign {params}")
        pool: list[list[ecdsa.Presignature]] = []
        presign = partial(ecdsa.local_presign, shares, signers)
        seconds, reps = timed(partial(_extend, pool, partial(_one, presign)), 3)
        rows.append(Row(SUITE, "presignature", params, seconds, reps))

        # Each presignature run timed above signs once (a presignature cannot be copied).
        progress(f"cggmp sign from presignatures {params}")
        seconds, reps = timed(partial(_sign_from_presignatures, pool, pk), len(pool))
        rows.append(
            Row(SUITE, "sign from presignatures (partials+combine+verify)", params, seconds, reps)
        )

        progress(f"cggmp interactive sign {params}")
        seconds, reps = timed(partial(ecdsa.local_sign, shares, signers, DIGEST), 3)
        rows.append(Row(SUITE, "interactive sign", params, seconds, reps))
    return rows
