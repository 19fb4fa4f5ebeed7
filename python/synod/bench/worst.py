"""What the worst message a peer may send costs its receiver (`--worst-message`).

FROST: a signer receives a signing package from the coordinator. The largest package it
accepts has one commitment per committee member and a message of `MAX_SIGNING_MESSAGE`
bytes; anything larger, or naming identifiers outside the committee, is refused by the shape
check before the crate decodes a point. CGGMP: a message whose big integers exceed what the
crate's parameters produce is refused before the crate's types are built.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from synod.bench.table import Row, timed
from synod.crypto import ecdsa, encoding, frost
from synod.crypto.errors import CryptoError

SIZES = ((3, 5), (11, 15), (67, 100))
ENVELOPE_FIELD = 1 << 24  # the largest field an envelope carries


def _refused(fn: Callable[[], object]) -> None:
    try:
        fn()
    except CryptoError:
        return
    raise AssertionError("a hostile message was accepted")


def _frost_rows(suite: frost.Ciphersuite, t: int, n: int) -> list[Row]:
    keys, public = frost.local_dkg(suite, t, n) if n <= 15 else _dealer(suite, t, n)
    committee = list(public.identifiers)
    me = keys[committee[0]]
    commitments = {i: frost.commit(k)[1] for i, k in keys.items()}
    message = os.urandom(frost.MAX_SIGNING_MESSAGE)
    full = frost.signing_package(commitments, message)
    data = full.to_bytes()
    tag = f"frost:{suite.value}:signing_package"
    # The last commitment's hiding point replaced by bytes that are not a point.
    bad_point = bytearray(full.raw)
    end_of_points = len(full.raw) - len(message) - 3  # varint of a 64 KiB length is 3 bytes
    bad_point[end_of_points - 1] ^= 0xFF
    bad_point[end_of_points - 40 : end_of_points - 8] = b"\xff" * 32
    flood = full.raw[:5] + b"\xff\xff\x03" + os.urandom(ENVELOPE_FIELD)
    params = f"{t}/{n}"
    receive = partial(frost.receive_signing_package, key_package=me, committee=committee)
    r1 = frost.dkg_part1(suite, 1, n, t)[1].to_bytes()
    r1_tag = f"frost:{suite.value}:dkg_round1_package"
    r1_flood = encoding.wrap(r1_tag, os.urandom(ENVELOPE_FIELD))
    rows = []
    cases: list[tuple[str, Callable[[], object], bool]] = [
        ("largest accepted signing package", partial(receive, data), True),
        (
            "largest package, last point invalid",
            partial(receive, encoding.wrap(tag, bytes(bad_point))),
            False,
        ),
        ("16 MiB signing package", partial(receive, encoding.wrap(tag, flood)), False),
        ("DKG round-1 package", partial(frost.receive_dkg_round1_package, r1, suite, t), True),
        (
            "16 MiB DKG round-1 package",
            partial(frost.receive_dkg_round1_package, r1_flood, suite, t),
            False,
        ),
        (
            "16 MiB commitments",
            partial(frost.SigningCommitments.from_bytes, _flood(suite, "signing_commitments")),
            False,
        ),
        (
            "16 MiB signature share",
            partial(frost.SignatureShare.from_bytes, _flood(suite, "signature_share")),
            False,
        ),
    ]
    for name, fn, ok in cases:
        seconds, reps = timed(fn if ok else partial(_refused, fn), 5)
        rows.append(Row(f"frost-{suite.value}", name, params, seconds, reps))
    return rows


def _flood(suite: frost.Ciphersuite, kind: str) -> bytes:
    return encoding.wrap(f"frost:{suite.value}:{kind}", os.urandom(ENVELOPE_FIELD))


def _dealer(
    suite: frost.Ciphersuite, t: int, n: int
) -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    from synod.crypto.import_export import split

    return split(suite, n, t)  # a dealer: a 100-party DKG would dominate the run


def _cggmp_rows() -> list[Row]:
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "tests" / "data" / "cggmp_aux_info.json"
    doc = json.loads(data.read_text())["aux_info"]["3"]
    aux = [ecdsa.AuxInfo.from_raw(json.dumps(a, separators=(",", ":")).encode()) for a in doc]
    incomplete = ecdsa.local_incomplete_keygen(2, 3)
    shares = [ecdsa.KeyShare.from_parts(s, a) for s, a in zip(incomplete, aux, strict=True)]
    digest = os.urandom(32)
    tag = "cggmp:secp256k1:sign_msg"

    def fresh() -> tuple[ecdsa.SignSession, dict[str, Any], bytes]:
        """A receiver (party 0) and party 1's round-1 broadcast (decoded) and p2p message."""
        eid = os.urandom(32)
        receiver = ecdsa.SignSession(eid, shares[0], [0, 1], digest)
        sender = ecdsa.SignSession(eid, shares[1], [0, 1], digest)
        out = sender.outgoing()
        broadcast = next(m for r, m in out if r is None)
        p2p = next(m for r, m in out if r == 0)
        return receiver, json.loads(encoding.unwrap(tag, broadcast)), p2p

    rows = []
    repeats = 5
    for name, k_value in [
        ("honest round 1 (broadcast + p2p)", None),
        ("round 1, widest integer within bounds", "f" * 1807),
        ("round 1, 1 MiB integer", "f" * (1 << 20)),
    ]:
        # Fresh sessions made beforehand: only the receiving is timed.
        runs = []
        for _ in range(repeats):
            receiver, body, p2p = fresh()
            if k_value is not None:
                body["Round1a"]["K"]["value"] = k_value
            runs.append((receiver, encoding.wrap(tag, json.dumps(body).encode()), p2p))
        seconds, reps = timed(partial(_receive, runs), repeats)
        rows.append(Row("cggmp21-secp256k1", name, "2/3", seconds, reps))
    return rows


def _receive(runs: list[tuple[ecdsa.SignSession, bytes, bytes]]) -> None:
    receiver, broadcast, p2p = runs.pop()
    with contextlib.suppress(CryptoError):
        receiver.receive(1, True, broadcast)
        receiver.receive(1, False, p2p)


def worst_rows(
    sizes: Sequence[tuple[int, int]] = SIZES, progress: Callable[[str], None] = lambda _: None
) -> list[Row]:
    rows: list[Row] = []
    for suite in frost.Ciphersuite:
        for t, n in sizes:
            progress(f"worst FROST messages {suite.value} {t}/{n}")
            rows += _frost_rows(suite, t, n)
    progress("worst CGGMP messages")
    rows += _cggmp_rows()
    return rows
