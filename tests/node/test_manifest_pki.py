"""Manifest validation and what a certificate names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from synod.node.manifest import Manifest, ManifestError
from synod.node.pki import (
    MEMBER_URI,
    CommitteeCA,
    PkiError,
    Role,
    fingerprint,
    identify,
    new_key,
)

FP = "ab" * 32


def doc(**over: Any) -> dict[str, Any]:
    members = [
        {
            "id": i,
            "endpoint": f"127.0.0.1:{7100 + i}",
            "sign_key": f"{i:02x}" * 32,
            "seal_key": f"{i + 50:02x}" * 32,
            "tls_fingerprint": f"{i + 100:02x}" * 32,
        }
        for i in (1, 2, 3)
    ]
    return {
        "version": 1,
        "epoch": 0,
        "threshold": 2,
        "ca_fingerprint": FP,
        "members": members,
        **over,
    }


def test_roundtrip(tmp_path: Path) -> None:
    m = Manifest.from_json(doc())
    path = tmp_path / "manifest.json"
    path.write_text(m.dumps())
    again = Manifest.load(path)
    assert again == m and again.ids == [1, 2, 3]
    assert again.directory()[2].sign_key == bytes([2]) * 32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(threshold=4), "threshold"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d["members"][1].update(id=1), "same id"),
        (lambda d: d["members"][2].update(endpoint="127.0.0.1:7101"), "same endpoint"),
        (lambda d: d["members"][0].update(endpoint="localhost"), "member 1: endpoint"),
        (lambda d: d["members"][0].update(sign_key="00"), "member 1: sign_key"),
        (lambda d: d["members"][2].update(tls_fingerprint=FP.upper()), "member 3: tls_fingerprint"),
        (lambda d: d["members"][0].pop("seal_key"), "missing field 'seal_key'"),
        (lambda d: d["members"][0].update(id=True), "id must be an integer"),
        (lambda d: d["members"][0].update(endpoint="127.0.0.1:²"), "member 1: endpoint"),
        (lambda d: d["members"][0].update(endpoint="127.0.0.1:71²"), "member 1: endpoint"),
        (lambda d: d["members"][0].update(endpoint="127.0.0.1:٧١٠١"), "member 1: endpoint"),
    ],
)
def test_invalid_manifest_named(change: Any, message: str) -> None:
    d = json.loads(json.dumps(doc()))
    change(d)
    with pytest.raises(ManifestError, match=message):
        Manifest.from_json(d)


def test_certificates_name_their_holder() -> None:
    ca = CommitteeCA.create()
    member = ca.issue_member(7, new_key().public_key())
    who = identify(member, ca.cert)
    assert (who.role, who.member_id, who.fingerprint) == (Role.MEMBER, 7, fingerprint(member))
    op = identify(ca.issue_operator("operator", new_key().public_key()), ca.cert)
    assert (op.role, op.member_id, op.name) == (Role.OPERATOR, None, "operator")
    other = CommitteeCA.create("other")
    with pytest.raises(PkiError, match="not issued by the committee CA"):
        identify(other.issue_member(7, new_key().public_key()), ca.cert)
    with pytest.raises(PkiError):
        ca.issue_operator("Not Valid!", new_key().public_key())
    assert repr(ca).startswith("CommitteeCA(fingerprint=")  # never the key


@pytest.mark.parametrize("member_id", ["²", "٥", "1²", "７", "0", "1234567890"])
def test_a_member_id_is_ascii_digits_only(member_id: str) -> None:
    ca = CommitteeCA.create()
    # what `issue_member` refuses to write, a hostile issuer could: build it by hand
    uri = x509.UniformResourceIdentifier._init_without_validation(MEMBER_URI + member_id)
    cert = ca._leaf(new_key().public_key(), "x", [uri], [ExtendedKeyUsageOID.CLIENT_AUTH])
    with pytest.raises(PkiError, match="invalid member id"):
        identify(cert, ca.cert)
