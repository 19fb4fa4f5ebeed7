"""A committee on disk: creating a development committee and loading one member's material.

Layout written by `init_committee` (the CA key never enters a node directory)::

    DIR/manifest.json             the committee manifest (public)
    DIR/ca/ca.pem, ca.key.pem     the development CA (key mode 0600)
    DIR/operator/                 operator client certificate and key, CA certificate
    DIR/node-<i>/keystore         member i's secrets (identity key, TLS key, ...), encrypted
    DIR/node-<i>/cert.pem         member i's TLS certificate; ca.pem; manifest.json
    DIR/node-<i>/node.json        {"member_id": i}
    DIR/node-<i>/passphrase       DEVELOPMENT ONLY: the keystore passphrase, mode 0600
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from synod.node.grpc_transport import TlsMaterial
from synod.node.keystore import (
    RFC9106_SECOND,
    KdfParams,
    Keystore,
    KeystoreError,
    SecretKind,
    atomic_write,
)
from synod.node.manifest import Endpoint, Manifest, ManifestError, Member
from synod.node.pki import (
    CommitteeCA,
    PkiError,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    identify,
    key_to_pem,
    new_key,
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


def _identity_bytes(identity: Identity) -> bytes:
    return identity.sign_secret.private_bytes_raw() + identity.seal_secret.private_bytes_raw()


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
    """Create a development committee under `root` (which must be absent or empty)."""
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

    op = root / "operator"
    op.mkdir(mode=0o700)
    op_key = new_key()
    _write(op / "operator.pem", cert_to_pem(ca.issue_operator("operator", op_key.public_key())))
    _write(op / "operator.key.pem", key_to_pem(op_key), 0o600)
    _write(op / "ca.pem", ca_pem)

    members: list[Member] = []
    stores: list[tuple[int, Identity, bytes, bytes]] = []
    for i in range(1, n + 1):
        identity = Identity.generate(i)
        tls_key = new_key()
        cert = ca.issue_member(i, tls_key.public_key())
        keys = identity.public
        members.append(
            Member(
                i, Endpoint(host, base_port + i), keys.sign_key, keys.seal_key, fingerprint(cert)
            )
        )
        stores.append((i, identity, key_to_pem(tls_key), cert_to_pem(cert)))
    manifest = Manifest(0, threshold, fingerprint(ca.cert), tuple(members))
    manifest_bytes = manifest.dumps().encode()
    _write(root / MANIFEST, manifest_bytes)

    for i, identity, tls_key_pem, cert_pem in stores:
        progress(f"member {i}: keystore (Argon2id), TLS certificate, manifest")
        d = node_dir(root, i)
        d.mkdir(mode=0o700)
        passphrase = secrets.token_urlsafe(24).encode()
        _write(d / DEV_PASSPHRASE, passphrase + b"\n", 0o600)
        ks = Keystore.create(d / "keystore", i, passphrase, kdf)
        ks.put(IDENTITY_KEY_ID, SecretKind.IDENTITY, manifest.epoch, _identity_bytes(identity))
        ks.put(TLS_KEY_ID, SecretKind.TLS_KEY, manifest.epoch, tls_key_pem)
        _write(d / "cert.pem", cert_pem)
        _write(d / "ca.pem", ca_pem)
        _write(d / MANIFEST, manifest_bytes)
        _write(d / "node.json", json.dumps({"member_id": i}).encode() + b"\n")
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
