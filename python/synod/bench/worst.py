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
            partial(frost.SigningCommitments.from_raw, suite, os.urandom(ENVELOPE_FIELD)),
            False,
        ),
        (
            "16 MiB signature share",
            partial(frost.SignatureShare.from_raw, suite, os.urandom(ENVELOPE_FIELD)),
            False,
        ),
    ]
    for name, fn, ok in cases:
        seconds, reps = timed(fn if ok else partial(_refused, fn), 5)
        rows.append(Row(f"frost-{suite.value}", name, params, seconds, reps))
    return rows


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

    def fresh() -> tuple[ecdsa.SignSession, dict[str, object]]:
        eid = os.urandom(32)
        receiver = ecdsa.SignSession(eid, shares[0], [0, 1], digest)
        sender = ecdsa.SignSession(eid, shares[1], [0, 1], digest)
        (_, msg) = next((r, m) for r, m in sender.outgoing() if r is None)
        body = json.loads(encoding.unwrap(tag, msg))
        return receiver, body

    def deliver(body: dict[str, object], ok: bool) -> None:
        receiver, _ = fresh()
        msg = encoding.wrap(tag, json.dumps(body).encode())
        if ok:
            receiver.receive(1, True, msg)
        else:
            _refused(partial(receiver.receive, 1, True, msg))

    _, honest = fresh()
    widest = json.loads(json.dumps(honest))
    widest["Round1a"]["K"]["value"] = "f" * 1807
    huge = json.loads(json.dumps(honest))
    huge["Round1a"]["K"]["value"] = "f" * (1 << 20)
    rows = []
    for name, body, ok in [
        ("honest round-1 broadcast", honest, True),
        ("1 MiB integer", huge, False),
    ]:
        seconds, reps = timed(partial(deliver, body, ok), 5)
        rows.append(Row("cggmp21-secp256k1", name, "2/3", seconds, reps))
    seconds, reps = timed(partial(_deliver_any, fresh, widest, tag), 5)
    rows.append(Row("cggmp21-secp256k1", "widest integer within bounds", "2/3", seconds, reps))
    return rows


def _deliver_any(
    fresh: Callable[[], tuple[ecdsa.SignSession, dict[str, object]]],
    body: dict[str, object],
    tag: str,
) -> None:
    receiver, _ = fresh()
    with contextlib.suppress(CryptoError):
        receiver.receive(1, True, encoding.wrap(tag, json.dumps(body).encode()))


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
