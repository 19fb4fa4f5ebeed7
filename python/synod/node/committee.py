"""A committee on disk: creating a development committee and loading one member's material.

Layout written by `init_committee` (the CA key never enters a node directory)::

    DIR/manifest.json             the committee manifest (public)
    DIR/ca/ca.pem, ca.key.pem     the development CA (key mode 0600)
    DIR/operator/                 operator client certificate and key, CA certificate
    DIR/node-<i>/keystore         member i's secrets (identity key, TLS key, ...), encrypted
    DIR/node-<i>/cert.pem         member i's TLS certificate; ca.pem; manifest.json
    DIR/node-<i>/node.json        {"member_id": i}
    DIR/node-<i>/passphrase       DEVELOPMENT ONLY: the keystore passphrase, mode 0600
    DIR/node-<i>/request.json     member i's enrolment request (public)
    DIR/bundle/                   what every member installed (public: `synod.node.enrol`)
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from synod.node.grpc_transport import TlsMaterial
from synod.node.keystore import (
    RFC9106_SECOND,
    KdfParams,
    Keystore,
    KeystoreError,
    atomic_write,
)
from synod.node.manifest import Endpoint, Manifest, ManifestError
from synod.node.pki import (
    CommitteeCA,
    PkiError,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    identify,
    key_to_pem,
)
from synod.protocols.envelope import Identity

IDENTITY_KEY_ID = "identity"
TLS_KEY_ID = "tls"
DEV_PASSPHRASE = "passphrase"
MANIFEST = "manifest.json"


class CommitteeError(ValueError):
    """A committee directory that cannot be created or used (one line)."""


def node_dir(root: Path, member_id: int) -> Path:
    return root / f"node-{member_id}"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    atomic_write(path, data, mode)


def identity_from_bytes(member_id: int, raw: bytes) -> Identity:
    if len(raw) != 64:
        raise CommitteeError("identity key entry has the wrong length")
    return Identity(
        member_id,
        Ed25519PrivateKey.from_private_bytes(raw[:32]),
        X25519PrivateKey.from_private_bytes(raw[32:]),
    )


def init_committee(
    root: Path,
    threshold: int,
    n: int,
    base_port: int,
    host: str = "127.0.0.1",
    kdf: KdfParams = RFC9106_SECOND,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Manifest:
    """Create a development committee under `root` (which must be absent or empty), by the
    steps of a committee set up across hosts (`synod.node.enrol`) run on one machine: each
    member's keys and request, the assembly of the requests (the CA key in `root/ca`,
    unencrypted: DEVELOPMENT ONLY), each member installing the bundle."""
    from synod.node.enrol import assemble, init_member, init_operator, install_member

    if root.exists() and any(root.iterdir()):
        raise CommitteeError(f"{root} exists and is not empty")
    if not 1 <= threshold <= n:
        raise CommitteeError(f"threshold must be between 1 and n={n} (got {threshold})")
    if base_port < 1 or base_port + n > 65535:
        raise CommitteeError(f"ports {base_port + 1}..{base_port + n} are out of range")
    root.mkdir(parents=True, exist_ok=True)
    progress("creating the development committee CA")
    ca = CommitteeCA.create()
    ca_pem = cert_to_pem(ca.cert)
    (root / "ca").mkdir(mode=0o700)
    _write(root / "ca" / "ca.pem", ca_pem)
    _write(root / "ca" / "ca.key.pem", key_to_pem(ca.key), 0o600)

    requests: list[Any] = [init_operator(root / "operator", "operator")]
    passphrases: dict[int, bytes] = {}
    for i in range(1, n + 1):
        progress(f"member {i}: keystore (Argon2id) and enrolment request")
        passphrases[i] = secrets.token_urlsafe(24).encode()
        d = node_dir(root, i)
        requests.append(init_member(d, i, Endpoint(host, base_port + i), passphrases[i], kdf))
        _write(d / DEV_PASSPHRASE, passphrases[i] + b"\n", 0o600)
    bundle = root / "bundle"
    manifest = assemble(requests, threshold, ca, bundle).manifest
    _write(root / MANIFEST, manifest.dumps().encode())
    operator_cert = (bundle / "operator-operator" / "operator.pem").read_bytes()
    _write(root / "operator" / "operator.pem", operator_cert)
    _write(root / "operator" / "ca.pem", ca_pem)
    for i in range(1, n + 1):
        progress(f"member {i}: installs its certificate and the manifest")
        install_member(node_dir(root, i), bundle, passphrases[i], fingerprint(ca.cert))
    return manifest


@dataclass
class NodeMaterial:
    """Everything one member needs to run, checked against the manifest."""

    directory: Path
    member_id: int
    manifest: Manifest
    keystore: Keystore
    identity: Identity = field(repr=False)
    tls: TlsMaterial = field(repr=False)


def read_member_id(directory: Path) -> int:
    try:
        doc = json.loads((directory / "node.json").read_text())
    except FileNotFoundError:
        raise CommitteeError(f"{directory} is not a member directory (no node.json)") from None
    except (OSError, ValueError) as err:
        raise CommitteeError(f"{directory}/node.json: {err}") from None
    member_id = doc.get("member_id") if isinstance(doc, dict) else None
    if isinstance(member_id, bool) or not isinstance(member_id, int) or member_id < 1:
        raise CommitteeError(f"{directory}/node.json: member_id must be a positive integer")
    return member_id


def load_node(directory: Path, passphrase: bytes) -> NodeMaterial:
    """Open a member directory; `KeystoreError`/`CommitteeError` on any inconsistency."""
    member_id = read_member_id(directory)
    try:
        manifest = Manifest.load(directory / MANIFEST)
        member = manifest.member(member_id)
    except ManifestError as err:
        raise CommitteeError(str(err)) from None
    try:
        ca_pem = (directory / "ca.pem").read_bytes()
        cert_pem = (directory / "cert.pem").read_bytes()
    except OSError as err:
        raise CommitteeError(f"{directory}: {err.strerror}: {err.filename}") from None
    try:
        ca, cert = cert_from_pem(ca_pem), cert_from_pem(cert_pem)
        who = identify(cert, ca)
    except PkiError as err:
        raise CommitteeError(f"{directory}: {err}") from None
    if fingerprint(ca) != manifest.ca_fingerprint:
        raise CommitteeError(f"{directory}/ca.pem is not the manifest's committee CA")
    if who.member_id != member_id or who.fingerprint != member.tls_fingerprint:
        raise CommitteeError(f"{directory}/cert.pem is not member {member_id}'s certificate")
    keystore = Keystore.open(directory / "keystore", passphrase)
    if keystore.node_id != member_id:
        raise KeystoreError(f"keystore belongs to member {keystore.node_id}, not {member_id}")
    identity = identity_from_bytes(member_id, keystore.get(IDENTITY_KEY_ID))
    if identity.public != member.keys:
        raise CommitteeError(f"member {member_id}'s identity key does not match the manifest")
    tls = TlsMaterial(keystore.get(TLS_KEY_ID), cert_pem, ca_pem)
    return NodeMaterial(directory, member_id, manifest, keystore, identity, tls)


def dev_passphrase_path(directory: Path) -> Path | None:
    path = directory / DEV_PASSPHRASE
    return path if path.is_file() else None


def check_mode(path: Path) -> None:
    """Refuse a passphrase file others can read."""
    if os.stat(path).st_mode & 0o077:
        raise KeystoreError(f"{path} is readable by others (chmod 600)")
