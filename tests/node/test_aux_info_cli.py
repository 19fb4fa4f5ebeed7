"""`synod aux-info` among real member processes: each member prepares its primes (here the
TEST-ONLY pregenerated ones, `node run --test-primes`), the CGGMP aux-info protocol runs
over the peer links, each member stores its aux info in its own keystore (and has it
again after a restart), and an ECDSA key made afterwards signs a digest whose signer the
Ethereum address recovery (libsecp256k1) confirms. A second ceremony is refused."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coincurve
import pytest

from synod.chains.evm.address import address_bytes
from synod.chains.localnode import free_base_port
from synod.node.control import operator_clients
from synod.node.keystore import Keystore, SecretKind
from synod.node.local_cluster import member_dirs, start_members, stop_members, wait_linked
from synod.node.process import SESSION_DB, STATUS_FILE
from tests.fixtures import PRIMES_FILE
from tests.node.test_node_cli import synod_cmd

T, N = 2, 3
# a small presignature pool: two per member, one run at a time
MEMBER_ARGS = ("--test-primes", str(PRIMES_FILE), "--presign-target", "2", "--presign-min", "1",
               "--presign-batch", "1", "--adhoc-signing")  # fmt: skip


@pytest.fixture(scope="module")
def committee(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("aux") / "c"
    port = str(free_base_port(N))
    done = synod_cmd("committee", "init", "-t", str(T), "-n", str(N), "--dir", str(root),
                     "--base-port", port)  # fmt: skip
    assert done.returncode == 0, done.stderr
    members = member_dirs(root)
    extra = {m: [*MEMBER_ARGS] for m, _ in members}
    try:
        assert not start_members(members, 120.0, extra).failed
        wait_linked(members, 120.0)
        yield root
    finally:
        stop_members(members, 30.0)


def _json(*args: str) -> dict[str, object]:
    done = synod_cmd(*args, "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def test_aux_info_then_an_ecdsa_key_that_signs(committee: Path) -> None:
    refused = synod_cmd("dkg", "--scheme", "ecdsa", "--dir", str(committee))
    assert refused.returncode == 1 and "no CGGMP aux info" in refused.stderr

    done = _json("aux-info", "--dir", str(committee))
    assert done["members"] == [1, 2, 3]
    for member, directory in member_dirs(committee):
        ks = Keystore.open(directory / "keystore", (directory / "passphrase").read_bytes().strip())
        info = ks.info("cggmp-aux-info")
        assert info is not None and info.kind is SecretKind.CGGMP_AUX_INFO, member

    again = synod_cmd("aux-info", "--dir", str(committee))
    assert again.returncode == 1 and "already has CGGMP aux info" in again.stderr

    # A restarted member has its aux info again (from its keystore).
    stop_members(member_dirs(committee)[:1], 30.0)
    assert not start_members(member_dirs(committee)[:1], 120.0, {1: MEMBER_ARGS}).failed
    wait_linked(member_dirs(committee), 120.0)
    clients = operator_clients(committee)
    try:
        assert all(c.status()["aux_info"] for c in clients.values())
    finally:
        for c in clients.values():
            c.close()

    key = _json("dkg", "--scheme", "ecdsa", "--dir", str(committee))
    public = bytes.fromhex(str(key["group_public_key"]))
    digest = os.urandom(32)
    signed = _json("sign", "--key", str(key["key_id"]), "--message", digest.hex(),
                   "--dir", str(committee))  # fmt: skip
    recoverable = bytes.fromhex(str(signed["signature"]))
    recovered = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    assert address_bytes(recovered.format()) == address_bytes(public)

    # The pools fill in the background; a signature then takes one presignature, once.
    key_id = str(key["key_id"])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not all(
        _status(d).get("presignatures", {}).get(key_id, 0) >= 1 for _, d in member_dirs(committee)
    ):
        time.sleep(0.5)
    levels = [_status(d).get("presignatures", {}) for _, d in member_dirs(committee)]
    assert all(level.get(key_id, 0) >= 1 for level in levels), levels
    before = [_used(d) for _, d in member_dirs(committee)]
    digest = os.urandom(32)
    signed = _json("sign", "--key", key_id, "--message", digest.hex(), "--dir", str(committee))
    recoverable = bytes.fromhex(str(signed["signature"]))
    recovered = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    assert address_bytes(recovered.format()) == address_bytes(public)
    taken = [_used(d) - b for (_, d), b in zip(member_dirs(committee), before, strict=True)]
    assert sorted(taken) == [0] * (N - T) + [1] * T  # one presignature, from its t signers


def _status(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / STATUS_FILE).read_text())
    return doc


def _used(directory: Path) -> int:
    """Presignatures a member took out of its pool (read from its store as it runs)."""
    db = sqlite3.connect(f"file:{directory / SESSION_DB}?mode=ro", uri=True)
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM presignatures WHERE state = 'used'").fetchone()[0]
        )
    finally:
        db.close()
