"""Keys and signatures from a 3-of-5 committee of real member processes on 127.0.0.1:
`synod dkg` / `synod sign` over the control services (operator certificate, mutual TLS),
every signature checked by an independent library, members SIGKILLed in the middle of a
signing session and restarted, the active aggregator SIGKILLed. No timed assertion: every
wait polls with a generous overall deadline."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coincurve
import nacl.signing
import pytest

from synod.chains.bitcoin.address import Network, p2tr_address
from synod.chains.evm.address import address_bytes
from synod.chains.localnode import free_base_port
from synod.node.committee import node_dir
from synod.node.control import ControlClient, ControlError, operator_clients
from synod.node.key_shares import KeystoreShares
from synod.node.keystore import Keystore, SecretKind
from synod.node.manifest import Manifest
from synod.node.process import SESSION_DB, running_pid
from synod.node.results import SessionStatus
from synod.protocols.roast import aggregator_candidates
from synod.runtime.node_signer import verify_signature
from tests.fixtures import stored_aux
from tests.node.helpers import holds_nonces, wait_for
from tests.node.test_node_cli import synod_cmd

T, N = 3, 5
MEMBERS = list(range(1, N + 1))


def _passphrase(root: Path, i: int) -> bytes:
    return (node_dir(root, i) / "passphrase").read_bytes().strip()


def _linked(root: Path) -> bool:
    done = synod_cmd("cluster", "status", "--dir", str(root), "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["members"]
    return all(m["running"] and m["linked"] == N - 1 for m in rows)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("signing") / "c"
    port = str(free_base_port(N))
    done = synod_cmd(
        "committee", "init", "-t", str(T), "-n", str(N), "--dir", str(root), "--base-port", port
    )
    assert done.returncode == 0, done.stderr
    # TEST-ONLY CGGMP aux info (made earlier by the real protocol from the stored test
    # primes): each member's own entry, as an aux-info ceremony would leave it.
    for i, aux in zip(MEMBERS, stored_aux(N), strict=True):
        ks = Keystore.open(node_dir(root, i) / "keystore", _passphrase(root, i))
        KeystoreShares(ks, 0).store_aux_info(aux)
    try:
        # no presignature pools: these tests time interactive signing and SIGKILLs, and five
        # members' background presigning would share the same two cores (the pool has its
        # own tests, in the simulator and over processes)
        up = synod_cmd(
            "cluster", "up", "--dir", str(root), "--presign-target", "0", "--adhoc-signing"
        )
        assert up.returncode == 0, up.stderr
        wait_for(lambda: _linked(root), "every member linked to every other", 120)
        yield root
    finally:
        synod_cmd("cluster", "down", "--dir", str(root))


def _json(*args: str) -> dict[str, Any]:
    done = synod_cmd(*args, "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def _dkg(root: Path, scheme: str) -> dict[str, Any]:
    return _json("dkg", "--scheme", scheme, "--dir", str(root))


def _sign(root: Path, key: str, message: bytes) -> dict[str, Any]:
    return _json("sign", "--key", key, "--message", message.hex(), "--dir", str(root))


@pytest.fixture(scope="module")
def bip340_key(cluster: Path) -> dict[str, Any]:
    return _dkg(cluster, "bip340")


def test_bip340_dkg_and_signature_verified_by_libsecp256k1(
    cluster: Path, bip340_key: dict[str, Any]
) -> None:
    key = bip340_key
    output = bytes.fromhex(key["output_key"])
    assert key["members"] == MEMBERS and key["threshold"] == T
    assert key["addresses"]["bitcoin_regtest"] == p2tr_address(output, Network.REGTEST)
    message = os.urandom(32)
    signed = _sign(cluster, key["key_id"], message)
    sig = bytes.fromhex(signed["signature"])
    assert coincurve.PublicKeyXOnly(output).verify(sig, message)
    assert len(signed["signers"]) == T and set(signed["signers"]) <= set(MEMBERS)
    assert signed["culprits"] == [] and signed["sub_sessions"] >= 1
    # ad-hoc signing is a development tool: every member recorded the session, who asked
    # and the message's hash, in its own hash-chained audit trail before it started
    digest = hashlib.sha256(message).hexdigest()
    for i in MEMBERS:
        trail = node_dir(cluster, i) / "audit.db"
        verified = synod_cmd("audit", "verify", "--db", str(trail), "--json")
        assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stderr
        db = sqlite3.connect(f"file:{trail}?mode=ro", uri=True)
        rows = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'adhoc_sign'")
        found = [(a, json.loads(d)) for a, d in rows.fetchall()]
        db.close()
        assert any(
            actor.startswith("operator:") and d["sha256"] == digest and d["key_id"] == key["key_id"]
            for actor, d in found
        ), found
    # each member keeps its own share, encrypted in its own keystore, nowhere else
    for i in MEMBERS:
        ks = Keystore.open(node_dir(cluster, i) / "keystore", _passphrase(cluster, i))
        info = ks.info(f"frost:{key['key_id']}")
        assert info is not None and info.kind is SecretKind.FROST_KEY_PACKAGE
        share = ks.get(f"frost:{key['key_id']}")
        for path in node_dir(cluster, i).rglob("*"):
            if path.is_file() and path.name != "keystore":
                assert share not in path.read_bytes(), path


def test_ed25519_dkg_and_signature_verified_by_libsodium(cluster: Path) -> None:
    key = _dkg(cluster, "ed25519")
    message = b"a Solana message, any length " + os.urandom(40)
    signed = _sign(cluster, key["key_id"], message)
    verify_key = nacl.signing.VerifyKey(bytes.fromhex(key["group_public_key"]))
    assert verify_key.verify(message, bytes.fromhex(signed["signature"])) == message
    assert len(signed["signers"]) == T


def test_ecdsa_dkg_and_signature_recover_the_ethereum_address(cluster: Path) -> None:
    key = _dkg(cluster, "ecdsa")
    public = bytes.fromhex(key["group_public_key"])
    digest = os.urandom(32)
    signed = _sign(cluster, key["key_id"], digest)
    recoverable = bytes.fromhex(signed["signature"])
    recovered = coincurve.PublicKey.from_signature_and_message(recoverable, digest, hasher=None)
    assert address_bytes(recovered.format()) == address_bytes(public)
    assert key["addresses"]["ethereum"].lower().endswith(address_bytes(public).hex())
    for i in MEMBERS:  # each member's CGGMP share is in its keystore (loaded again on restart)
        ks = Keystore.open(node_dir(cluster, i) / "keystore", _passphrase(cluster, i))
        info = ks.info(f"cggmp:{key['key_id']}")
        assert info is not None and info.kind is SecretKind.CGGMP_KEY_SHARE


def test_bad_input_is_exit_2_and_one_line(cluster: Path, bip340_key: dict[str, Any]) -> None:
    root = str(cluster)
    cases = [
        ("sign", "--key", bip340_key["key_id"], "--message", "zz", "--dir", root),
        ("sign", "--key", "no-such-key", "--message", "00", "--dir", root),
        ("sign", "--key", bip340_key["key_id"], "--message", "00" * 65, "--dir", root),
        ("dkg", "--scheme", "bip340", "--key-id", "has space", "--dir", root),
        ("dkg", "--scheme", "bip340", "--key-id", bip340_key["key_id"], "--dir", root),
        ("dkg", "--scheme", "bip340", "--dir", str(cluster / "missing")),
        ("dkg", "--scheme", "rsa", "--dir", root),
    ]
    for args in cases:
        done = synod_cmd(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "error" in done.stderr, args


# -- members killed in the middle ----------------------------------------------------


def _nonce_uses(root: Path, i: int) -> list[str]:
    path = node_dir(root, i) / SESSION_DB
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT id FROM nonce_uses ORDER BY seq")]
    finally:
        db.close()


def _kill(root: Path, i: int) -> None:
    pid = running_pid(node_dir(root, i))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: running_pid(node_dir(root, i)) is None, f"member {i} gone", 120)


def _restart(root: Path) -> None:
    up = synod_cmd("cluster", "up", "--dir", str(root), "--adhoc-signing")
    assert up.returncode == 0, up.stderr
    wait_for(lambda: _linked(root), "every member linked again", 120)


def _signature(
    clients: dict[int, ControlClient], sid: bytes, key: dict[str, Any], message: bytes
) -> dict[str, Any]:
    """Poll the members until one reports a signature that verifies (generous deadline)."""
    found: dict[str, Any] = {}

    def reported() -> bool:
        for member, client in clients.items():
            try:
                result = client.get_result(sid)
            except ControlError:
                continue
            if result.signature is not None:
                found.update(result.as_dict(), member=member)
                return True
            assert result.status is not SessionStatus.FAILED, result.as_dict()
        return False

    wait_for(reported, "a signature from the cluster", 180)
    sig = bytes.fromhex(found["signature"])
    assert verify_signature("bip340", bytes.fromhex(key["output_key"]), message, sig)
    return found


def _assert_no_nonce_used_twice(root: Path) -> None:
    for i in MEMBERS:
        uses = Counter(_nonce_uses(root, i))
        twice = [n for n, c in uses.items() if c > 1]
        assert not twice, f"member {i} used nonces twice: {twice}"


def test_sigkill_of_a_signer_mid_session_then_restart(
    cluster: Path, bip340_key: dict[str, Any]
) -> None:
    clients = operator_clients(cluster, timeout=30)
    try:
        message, sid, victim = os.urandom(32), os.urandom(32), 2
        for member in MEMBERS:
            clients[member].start_sign(bip340_key["key_id"], sid, "bip340", message, None, 2.0)
        # the victim has committed to nonces for this session: kill it there
        wait_for(lambda: holds_nonces(cluster, victim, sid), "the victim's nonces", 120)
        _kill(cluster, victim)
        _signature({m: c for m, c in clients.items() if m != victim}, sid, bip340_key, message)
        _restart(cluster)
        _assert_no_nonce_used_twice(cluster)
        # the restarted member signs again, with the share it loaded from its keystore
        status = clients[victim].status()
        assert bip340_key["key_id"] in status["key_ids"], status
        again = _sign(cluster, bip340_key["key_id"], os.urandom(32))
        assert again["signature"]
        _assert_no_nonce_used_twice(cluster)
    finally:
        for client in clients.values():
            client.close()


def test_sigkill_of_the_active_aggregator_next_candidate_finishes(
    cluster: Path, bip340_key: dict[str, Any]
) -> None:
    manifest = Manifest.load(cluster / "manifest.json")
    clients = operator_clients(cluster, timeout=30)
    try:
        message, sid = os.urandom(32), os.urandom(32)
        first, second = aggregator_candidates(sid, manifest.epoch, tuple(MEMBERS))[:2]
        # the first candidate begins (its turn: it opens the session), then dies before the
        # others have even begun, so its turn cannot produce the signature
        clients[first].start_sign(bip340_key["key_id"], sid, "bip340", message, None, 2.0)
        _kill(cluster, first)
        for member in MEMBERS:
            if member != first:
                clients[member].start_sign(bip340_key["key_id"], sid, "bip340", message, None, 2.0)
        alive = {m: c for m, c in clients.items() if m != first}
        found = _signature(alive, sid, bip340_key, message)
        assert found["aggregator"] != first
        assert found["aggregator"] == second
        _restart(cluster)
        _assert_no_nonce_used_twice(cluster)
    finally:
        for client in clients.values():
            client.close()
