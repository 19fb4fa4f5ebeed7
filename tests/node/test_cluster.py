"""A local committee as real processes: `synod cluster up|status|down` and hostile peers."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from synod.chains.localnode import free_base_port
from synod.node.committee import load_node
from synod.node.control import ControlClient, ControlError, ControlTLS
from synod.node.grpc_transport import TlsMaterial
from synod.node.keystore import Keystore, SecretKind
from synod.node.manifest import Manifest
from synod.node.pki import (
    CommitteeCA,
    cert_from_pem,
    cert_to_pem,
    key_fingerprint,
    key_from_pem,
    key_to_pem,
    new_key,
)
from synod.node.process import PID_FILE, running_pid
from tests.node.helpers import Rogue, envelope, send_until, wait_for
from tests.node.test_node_cli import synod_cmd

N = 3


def status(root: Path) -> dict[int, dict[str, object]]:
    done = synod_cmd("cluster", "status", "--dir", str(root), "--json")
    assert done.returncode == 0, done.stderr
    return {m["id"]: m for m in json.loads(done.stdout)["members"]}


def counters(root: Path, member: int, section: str) -> dict[str, Any]:
    value = status(root)[member][section]
    assert isinstance(value, dict)
    return value


def all_linked(root: Path) -> bool:
    return all(m["running"] and m["linked"] == N - 1 for m in status(root).values())


def passphrase(root: Path, i: int) -> bytes:
    return (root / f"node-{i}" / "passphrase").read_bytes().strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("cluster") / "c"
    port = str(free_base_port(N))
    done = synod_cmd(
        "committee", "init", "-t", "2", "-n", str(N), "--dir", str(root), "--base-port", port
    )
    assert done.returncode == 0, done.stderr
    for i in range(1, N + 1):  # stand-ins for every secret kind a member will hold
        ks = Keystore.open(root / f"node-{i}" / "keystore", passphrase(root, i))
        for kind in (
            SecretKind.FROST_KEY_PACKAGE,
            SecretKind.CGGMP_KEY_SHARE,
            SecretKind.CGGMP_AUX_INFO,
            SecretKind.PRESIGNATURE,
        ):
            ks.put(f"test-{kind.value}", kind, 0, os.urandom(64))
    try:
        up = synod_cmd("cluster", "up", "--dir", str(root))
        assert up.returncode == 0, up.stderr
        wait_for(lambda: all_linked(root), "every member linked to every other")
        yield root
    finally:
        synod_cmd("cluster", "down", "--dir", str(root))


def test_status_shows_every_member_linked(cluster: Path) -> None:
    st = status(cluster)
    assert sorted(st) == list(range(1, N + 1))
    for m in st.values():
        assert m["state"] == "ready" and m["pid"] is not None
        assert m["transport"] == {}  # no drop, no refusal among honest members


def test_valid_certificate_envelopes_of_another_member_refused(cluster: Path) -> None:
    one = load_node(cluster / "node-1", passphrase(cluster, 1))
    two = load_node(cluster / "node-2", passphrase(cluster, 2))
    rogue = Rogue(one.manifest, 3, one.tls.key_pem, one.tls.cert_pem, one.tls.ca_pem)
    before = counters(cluster, 3, "router")
    send_until(
        rogue,
        [envelope(two.identity, 3, b"signed by 2, sent by 1")] * 3,
        lambda: counters(cluster, 3, "transport").get("peer_mismatch", 0) >= 3,
        "member 3 counting three peer_mismatch drops",
    )
    assert counters(cluster, 3, "router") == before  # none reached the router
    wait_for(lambda: all_linked(cluster), "member 1's own link back after the rogue left")


def test_certificate_from_another_ca_refused(cluster: Path) -> None:
    manifest = Manifest.load(cluster / "manifest.json")
    other = CommitteeCA.create("another CA")
    key = new_key()
    fake = TlsMaterial(key_to_pem(key), cert_to_pem(other.issue_member(1, key.public_key())), b"")
    real_ca = (cluster / "ca" / "ca.pem").read_bytes()
    before = counters(cluster, 3, "router")
    code, seen = Rogue(manifest, 3, fake.key_pem, fake.cert_pem, real_ca).send([b"x"])
    assert code is grpc.StatusCode.UNAVAILABLE and seen == []
    assert counters(cluster, 3, "router") == before


def test_replayed_envelope_after_receiver_restart_dropped(cluster: Path) -> None:
    one = load_node(cluster / "node-1", passphrase(cluster, 1))
    captured = envelope(one.identity, 3, b"captured on the wire")
    rogue = Rogue(one.manifest, 3, one.tls.key_pem, one.tls.cert_pem, one.tls.ca_pem)

    before = counters(cluster, 3, "router")
    send_until(
        rogue, [captured], lambda: counters(cluster, 3, "router") != before, "member 3 routing it"
    )
    first = counters(cluster, 3, "router")
    pid = running_pid(cluster / "node-3")
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: running_pid(cluster / "node-3") is None, "member 3 stopped")
    up = synod_cmd("cluster", "up", "--dir", str(cluster))
    assert up.returncode == 0, up.stderr
    wait_for(lambda: all_linked(cluster), "member 3 back and linked")
    after_restart = counters(cluster, 3, "router")
    send_until(
        rogue,
        [captured],
        lambda: counters(cluster, 3, "router") != after_restart,
        "member 3 routing the replay",
    )
    replayed = counters(cluster, 3, "router")
    grew = {k for k in replayed if replayed[k] > after_restart.get(k, 0)}
    accepted = {k for k in first if first[k] > before.get(k, 0)}
    assert grew and not grew & accepted, (grew, accepted)
    assert "replay" in grew


def test_sigkilled_member_restarts_and_relinks(cluster: Path) -> None:
    pid = running_pid(cluster / "node-2")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not status(cluster)[2]["running"], "member 2 seen not running")
    # Member 1 dials member 2 and sees its link end. Member 3 serves member 2's dial, and
    # in one CI run it still showed that link connected a minute after the SIGKILL (a known
    # gap, listed in docs/ARCHITECTURE.md): the restart below replaces that stream.
    wait_for(
        lambda: counters(cluster, 1, "peers").get("2") != "connected",
        "member 1 seeing its link to 2 down",
    )
    up = synod_cmd("cluster", "up", "--dir", str(cluster), "--json")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["started"] == [2]
    wait_for(lambda: all_linked(cluster), "member 2 back and linked to everyone")


def _secret_forms(raw: bytes) -> list[bytes]:
    return [raw, raw.hex().encode(), raw.hex().upper().encode()]


def test_no_secret_in_plaintext_under_any_node_dir(cluster: Path) -> None:
    for i in range(1, N + 1):
        d = cluster / f"node-{i}"
        ks = Keystore.open(d / "keystore", passphrase(cluster, i))
        needles: list[bytes] = []
        for info in ks.items():
            secret = ks.get(info.key_id)
            needles += _secret_forms(secret)
            if info.kind is SecretKind.IDENTITY:
                needles += _secret_forms(secret[:32]) + _secret_forms(secret[32:])
            if info.kind is SecretKind.TLS_KEY:
                key = key_from_pem(secret)
                scalar = key.private_numbers().private_value.to_bytes(32, "big")
                der = key.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                needles += _secret_forms(scalar) + _secret_forms(der)
        assert {i.kind for i in ks.items()} >= {
            SecretKind.IDENTITY,
            SecretKind.TLS_KEY,
            SecretKind.STORAGE_KEY,
        }
        files = [p for p in d.rglob("*") if p.is_file()]
        assert any(p.name == "node.log" for p in files)
        for path in files:
            data = path.read_bytes()
            assert b"PRIVATE KEY" not in data, path
            for needle in needles:
                assert needle not in data, f"secret bytes in plaintext in {path}"


def test_control_service_admits_only_the_operator_certificate(cluster: Path) -> None:
    manifest = Manifest.load(cluster / "manifest.json")
    endpoint = str(manifest.member(3).endpoint)
    operator = ControlClient(endpoint, ControlTLS.from_dir(cluster / "operator", 3), timeout=30)
    try:
        assert operator.status()["member_id"] == 3
    finally:
        operator.close()
    one = load_node(cluster / "node-1", passphrase(cluster, 1))
    as_member = ControlTLS(one.tls.ca_pem, one.tls.cert_pem, one.tls.key_pem, "member-3.synod")
    member = ControlClient(endpoint, as_member, timeout=30)
    try:
        with pytest.raises(ControlError) as refused:
            member.status()
        assert refused.value.code == "PERMISSION_DENIED"
    finally:
        member.close()
    wait_for(
        lambda: counters(cluster, 3, "transport").get("control_refused_not_an_operator", 0) >= 1,
        "member 3 counting the refused member certificate",
    )
    # Its own certificate is the member's runtime: member 1's node admits it, and tells it the
    # public side of its keys (none yet here).
    own = ControlClient(str(manifest.member(1).endpoint), ControlTLS.own(one.tls, 1), timeout=30)
    try:
        status = own.status()
        assert status["member_id"] == 1
        assert set(status["keys"]) == set(status["key_ids"])
    finally:
        own.close()


def test_operators_are_admitted_by_fingerprint_and_revoked_without_a_restart(
    cluster: Path, tmp_path: Path
) -> None:
    """A certificate the committee CA issued to an operator the members do not list is
    refused; a listed one, once revoked on a member's host, is refused by that member from
    the next call on while the others still admit it."""
    ca_dir = cluster / "ca"
    ca = CommitteeCA(
        key_from_pem((ca_dir / "ca.key.pem").read_bytes()),
        cert_from_pem((ca_dir / "ca.pem").read_bytes()),
    )
    key = new_key()
    stranger = ca.issue_operator("mallory", key.public_key())
    ca_pem = (ca_dir / "ca.pem").read_bytes()
    manifest = Manifest.load(cluster / "manifest.json")
    endpoint = str(manifest.member(3).endpoint)
    tls = ControlTLS(ca_pem, cert_to_pem(stranger), key_to_pem(key), "member-3.synod")
    client = ControlClient(endpoint, tls, timeout=30)
    try:
        with pytest.raises(ControlError) as refused:
            client.status()
        assert refused.value.code == "PERMISSION_DENIED"
        assert "unknown_operator" in refused.value.detail
    finally:
        client.close()
    operator = cert_from_pem((cluster / "operator" / "operator.pem").read_bytes())
    operator_fp = key_fingerprint(operator)
    done = synod_cmd(
        "member", "revoke-operator", "--dir", str(cluster / "node-3"), "--fingerprint", operator_fp
    )
    assert done.returncode == 0, done.stderr
    revoked = ControlClient(endpoint, ControlTLS.from_dir(cluster / "operator", 3), timeout=30)
    still = ControlClient(
        str(manifest.member(2).endpoint), ControlTLS.from_dir(cluster / "operator", 2), timeout=30
    )
    try:
        with pytest.raises(ControlError) as refused:
            revoked.status()
        assert "revoked_operator" in refused.value.detail
        assert still.status()["member_id"] == 2
    finally:
        revoked.close()
        still.close()
    wait_for(
        lambda: counters(cluster, 3, "transport").get("control_refused_revoked_operator", 0) >= 1,
        "member 3 counting the revoked operator",
    )


def test_a_member_without_a_ledger_signs_no_ad_hoc_message_unless_told_to(
    cluster: Path,
) -> None:
    """Ad-hoc signing is a development tool: `cluster up` without --adhoc-signing starts
    members that refuse an admitted operator's arbitrary message."""
    manifest = Manifest.load(cluster / "manifest.json")
    client = ControlClient(
        str(manifest.member(1).endpoint), ControlTLS.from_dir(cluster / "operator", 1), timeout=30
    )
    try:
        with pytest.raises(ControlError) as refused:
            client.start_sign("any-key", b"s" * 32, "bip340", b"pay me", None, 1.0, 3.0)
        assert refused.value.code == "PERMISSION_DENIED"
        assert "ad-hoc signing is a development tool" in refused.value.detail
    finally:
        client.close()
    both = synod_cmd(
        "node", "run", "--dir", str(cluster / "node-1"), "--ledger", str(cluster / "x.db"),
        "--adhoc-signing",
    )  # fmt: skip
    assert both.returncode == 2
    assert "--adhoc-signing is for a member without --ledger" in both.stderr


def test_down_stops_every_member_cleanly(cluster: Path) -> None:
    done = synod_cmd("cluster", "down", "--dir", str(cluster), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["stopped"] == list(range(1, N + 1)) and out["killed"] == []
    for i in range(1, N + 1):
        d = cluster / f"node-{i}"
        assert not (d / PID_FILE).exists()
        assert json.loads((d / "status.json").read_text())["state"] == "stopped"
        assert "stopped" in (d / "node.log").read_text()
    assert not any(m["running"] for m in status(cluster).values())
