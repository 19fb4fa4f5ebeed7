"""A committee set up across hosts, with no private key leaving the host that made it.

Three steps, each on the machine that owns what it touches:

1. `init_member`, on the member's host: an encrypted keystore with the member's identity key
   (Ed25519 signing, X25519 sealing) and TLS key, ``node.json``, and ``request.json``, the
   member's *public* enrolment request: its id, its address (a host name or IP, never assumed
   to be loopback), its identity public keys and a certificate signing request for its TLS key
   (signed by that key, so nobody can enrol a key they do not hold). With a CometBFT binary it
   also makes the member's validator home and adds its validator public key, node id and P2P
   address.
2. `assemble`, offline, wherever the committee CA's key lives (`create_ca`): only the requests
   go in. It checks each, issues each member's certificate from its request, and writes the
   bundle every member installs: the manifest, the CA certificate, each member's certificate,
   the ledger's committee file and, when every member has a validator, the CometBFT genesis.
   Operator certificates are issued the same way from operator requests (`init_operator`).
3. `install_member`, on each host: the bundle's public files go into the member's directory,
   after checking that the manifest names this member with this member's keys and that the
   certificate is for the TLS key in its keystore.

`synod committee init` is the one-machine development shortcut built on these same steps.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from synod.consensus.committee import Committee as LedgerCommittee
from synod.consensus.localnet import set_toml
from synod.node.committee import (
    IDENTITY_KEY_ID,
    MANIFEST,
    TLS_KEY_ID,
    CommitteeError,
    identity_from_bytes,
    read_member_id,
)
from synod.node.keystore import RFC9106_SECOND, KdfParams, Keystore, SecretKind, atomic_write
from synod.node.manifest import Endpoint, Manifest, ManifestError, Member
from synod.node.operators import OPERATORS, OperatorList, OperatorListError
from synod.node.pki import (
    CommitteeCA,
    PkiError,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    identify,
    key_from_pem,
    new_key,
)
from synod.protocols.envelope import Identity

REQUEST = "request.json"
REQUEST_VERSION = 1
MAX_REQUEST_BYTES = 64 << 10
CA_CERT, CA_KEY = "ca.pem", "ca.key.pem"
LEDGER_COMMITTEE = "ledger-committee.json"
GENESIS = "genesis.json"
COMETBFT_HOME = "cometbft"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NODE_ID = re.compile(r"[0-9a-f]{40}")
_OPERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class EnrolmentError(CommitteeError):
    """A request, bundle or directory that cannot be used; the message names the file and what
    is wrong with it."""


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    atomic_write(path, data, mode)


def _csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


# ----------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class Validator:
    """A member's CometBFT validator, as its own `cometbft init` made it (public parts)."""

    pub_key: str  # base64 Ed25519 public key, as in priv_validator_key.json
    address: str  # CometBFT's validator address (hex)
    node_id: str  # the P2P node id (hex of 20 bytes)
    p2p: Endpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "pub_key": self.pub_key,
            "address": self.address,
            "node_id": self.node_id,
            "p2p": str(self.p2p),
        }


@dataclass(frozen=True)
class MemberRequest:
    member_id: int
    endpoint: Endpoint
    sign_key: bytes
    seal_key: bytes
    csr_pem: bytes
    validator: Validator | None = None

    def tls_public_key(self) -> ec.EllipticCurvePublicKey:
        """The TLS key the request is for, once its self-signature is checked."""
        try:
            csr = x509.load_pem_x509_csr(self.csr_pem)
        except ValueError:
            raise EnrolmentError(f"member {self.member_id}: tls_csr is not a PEM CSR") from None
        if not csr.is_signature_valid:
            raise EnrolmentError(f"member {self.member_id}: tls_csr signature does not verify")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise EnrolmentError(f"member {self.member_id}: tls_csr is not for an EC key")
        return public

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "version": REQUEST_VERSION,
            "role": "member",
            "id": self.member_id,
            "endpoint": str(self.endpoint),
            "sign_key": self.sign_key.hex(),
            "seal_key": self.seal_key.hex(),
            "tls_csr": self.csr_pem.decode(),
        }
        if self.validator is not None:
            doc["validator"] = self.validator.to_json()
        return doc


@dataclass(frozen=True)
class OperatorRequest:
    name: str
    csr_pem: bytes

    def public_key(self) -> ec.EllipticCurvePublicKey:
        try:
            csr = x509.load_pem_x509_csr(self.csr_pem)
        except ValueError:
            raise EnrolmentError(f"operator {self.name}: tls_csr is not a PEM CSR") from None
        public = csr.public_key()
        if not csr.is_signature_valid or not isinstance(public, ec.EllipticCurvePublicKey):
            raise EnrolmentError(f"operator {self.name}: tls_csr does not verify")
        return public

    def to_json(self) -> dict[str, Any]:
        return {
            "version": REQUEST_VERSION,
            "role": "operator",
            "name": self.name,
            "tls_csr": self.csr_pem.decode(),
        }


def _field(doc: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = doc.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EnrolmentError(f"{where}: {key} must be a {kind.__name__}")
    return value


def _hex32(doc: dict[str, Any], key: str, where: str) -> bytes:
    value = _field(doc, key, str, where)
    if not _HEX64.fullmatch(value):
        raise EnrolmentError(f"{where}: {key} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def parse_request(raw: bytes, where: str) -> MemberRequest | OperatorRequest:
    """A request file's bytes, every field checked; `where` names it in errors."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise EnrolmentError(f"{where}: larger than {MAX_REQUEST_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise EnrolmentError(f"{where}: not JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("version") != REQUEST_VERSION
        or doc.get("role") not in ("member", "operator")
    ):
        raise EnrolmentError(
            f"{where}: not an enrolment request (version {REQUEST_VERSION}, role 'member' or "
            "'operator')"
        )
    csr = _field(doc, "tls_csr", str, where).encode()
    if doc.get("role") == "operator":
        name = _field(doc, "name", str, where)
        if not _OPERATOR_NAME.fullmatch(name):
            raise EnrolmentError(f"{where}: name must be lowercase letters, digits and '-'")
        operator = OperatorRequest(name, csr)
        operator.public_key()
        return operator
    member_id = _field(doc, "id", int, where)
    if not 0 < member_id < 1 << 16:
        raise EnrolmentError(f"{where}: id must be in 1..65535")
    try:
        endpoint = Endpoint.parse(_field(doc, "endpoint", str, where))
    except ManifestError as err:
        raise EnrolmentError(f"{where}: {err}") from None
    validator = None
    if doc.get("validator") is not None:
        v = doc["validator"]
        if not isinstance(v, dict):
            raise EnrolmentError(f"{where}: validator must be an object")
        node_id = _field(v, "node_id", str, f"{where} validator")
        if not _NODE_ID.fullmatch(node_id):
            raise EnrolmentError(f"{where}: validator.node_id must be 40 lowercase hex digits")
        try:
            p2p = Endpoint.parse(_field(v, "p2p", str, f"{where} validator"))
        except ManifestError as err:
            raise EnrolmentError(f"{where}: validator.p2p: {err}") from None
        validator = Validator(
            _field(v, "pub_key", str, f"{where} validator"),
            _field(v, "address", str, f"{where} validator"),
            node_id,
            p2p,
        )
    request = MemberRequest(
        member_id,
        endpoint,
        _hex32(doc, "sign_key", where),
        _hex32(doc, "seal_key", where),
        csr,
        validator,
    )
    request.tls_public_key()
    return request


def read_request(path: Path) -> MemberRequest | OperatorRequest:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_REQUEST_BYTES + 1)
    except OSError as err:
        raise EnrolmentError(f"cannot read {path}: {err.strerror}") from None
    return parse_request(raw, str(path))


# ----------------------------------------------------------------------------- step 1
def _validator(home: Path, cometbft: Path, p2p: Endpoint) -> Validator:
    subprocess.run([str(cometbft), "init", "--home", str(home)], check=True, capture_output=True)
    node_id = subprocess.run(
        [str(cometbft), "show-node-id", "--home", str(home)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    key = json.loads((home / "config" / "priv_validator_key.json").read_text())
    return Validator(str(key["pub_key"]["value"]), str(key["address"]), node_id, p2p)


def init_member(
    directory: Path,
    member_id: int,
    endpoint: Endpoint,
    passphrase: bytes,
    kdf: KdfParams = RFC9106_SECOND,
    cometbft: Path | None = None,
    p2p: Endpoint | None = None,
) -> MemberRequest:
    """Make member `member_id`'s keys in `directory` (absent or empty) and its request."""
    if directory.exists() and any(directory.iterdir()):
        raise EnrolmentError(f"{directory} exists and is not empty")
    if not 0 < member_id < 1 << 16:
        raise EnrolmentError(f"member id must be in 1..65535 (got {member_id})")
    if (cometbft is None) != (p2p is None):
        raise EnrolmentError("a validator needs both the CometBFT binary and its P2P address")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity = Identity.generate(member_id)
    tls_key = new_key()
    keystore = Keystore.create(directory / "keystore", member_id, passphrase, kdf)
    secret = identity.sign_secret.private_bytes_raw() + identity.seal_secret.private_bytes_raw()
    keystore.put(IDENTITY_KEY_ID, SecretKind.IDENTITY, 0, secret)
    keystore.put(TLS_KEY_ID, SecretKind.TLS_KEY, 0, _key_pem(tls_key))
    _write(directory / "node.json", json.dumps({"member_id": member_id}).encode() + b"\n")
    validator = None
    if cometbft is not None and p2p is not None:
        validator = _validator(directory / COMETBFT_HOME, cometbft, p2p)
    keys = identity.public
    request = MemberRequest(
        member_id,
        endpoint,
        keys.sign_key,
        keys.seal_key,
        _csr(tls_key, f"synod member {member_id}"),
        validator,
    )
    _write(directory / REQUEST, json.dumps(request.to_json(), indent=2).encode() + b"\n")
    return request


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def init_operator(directory: Path, name: str) -> OperatorRequest:
    """An operator's control-service key (mode 0600, on the operator's machine) and request."""
    if not _OPERATOR_NAME.fullmatch(name):
        raise EnrolmentError(f"operator name must be lowercase letters, digits, '-' ({name!r})")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (directory / "operator.key.pem").exists():
        raise EnrolmentError(f"{directory}/operator.key.pem already exists")
    key = new_key()
    _write(directory / "operator.key.pem", _key_pem(key), 0o600)
    request = OperatorRequest(name, _csr(key, f"synod operator {name}"))
    _write(directory / REQUEST, json.dumps(request.to_json(), indent=2).encode() + b"\n")
    return request


# ----------------------------------------------------------------------------- step 2
def create_ca(directory: Path, passphrase: bytes) -> CommitteeCA:
    """The committee CA for an offline machine: its key encrypted with `passphrase`."""
    if (directory / CA_KEY).exists():
        raise EnrolmentError(f"{directory}/{CA_KEY} already exists")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = CommitteeCA.create()
    pem = ca.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    _write(directory / CA_KEY, pem, 0o600)
    _write(directory / CA_CERT, cert_to_pem(ca.cert))
    return ca


def load_ca(directory: Path, passphrase: bytes | None) -> CommitteeCA:
    try:
        cert = cert_from_pem((directory / CA_CERT).read_bytes())
        pem = (directory / CA_KEY).read_bytes()
    except OSError as err:
        raise EnrolmentError(f"{directory}: {err.strerror}: {err.filename}") from None
    try:
        if b"ENCRYPTED" in pem:
            if passphrase is None:
                raise EnrolmentError(f"{directory}/{CA_KEY} is encrypted: give its passphrase")
            key = serialization.load_pem_private_key(pem, passphrase)
        else:
            key = key_from_pem(pem)
    except (ValueError, TypeError, PkiError):
        raise EnrolmentError(f"{directory}/{CA_KEY}: wrong passphrase or not a key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise EnrolmentError(f"{directory}/{CA_KEY} is not the key of {CA_CERT}")
    return CommitteeCA(key, cert)


@dataclass(frozen=True)
class Bundle:
    manifest: Manifest
    ledger: LedgerCommittee | None  # with a chain id: the replicated ledger's committee
    genesis: bool  # whether a CometBFT genesis was written


def assemble(
    requests: Sequence[MemberRequest | OperatorRequest],
    threshold: int,
    ca: CommitteeCA,
    out: Path,
    chain_id: str | None = None,
    ledger_operators: dict[str, bytes] | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Bundle:
    """Issue the certificates and write the bundle into `out` (absent or empty): only public
    material goes in and comes out. With `chain_id`, also the replicated ledger's committee
    file (the members' identity keys, `ledger_operators`' request-signing keys) and, when the
    members have validators, the CometBFT genesis."""
    if out.exists() and any(out.iterdir()):
        raise EnrolmentError(f"{out} exists and is not empty")
    members = sorted(
        (r for r in requests if isinstance(r, MemberRequest)), key=lambda r: r.member_id
    )
    operators = [r for r in requests if isinstance(r, OperatorRequest)]
    if not members:
        raise EnrolmentError("no member requests")
    for field, values in (
        ("id", [r.member_id for r in members]),
        ("endpoint", [str(r.endpoint) for r in members]),
        ("sign_key", [r.sign_key for r in members]),
        ("operator name", [r.name for r in operators]),
    ):
        if len(set(values)) != len(values):
            raise EnrolmentError(f"two requests share the same {field}")
    with_validator = [r for r in members if r.validator is not None]
    if with_validator and len(with_validator) != len(members):
        raise EnrolmentError(
            "either every member has a validator or none: "
            f"{sorted(r.member_id for r in members if r.validator is None)} have none"
        )
    out.mkdir(parents=True, exist_ok=True)
    certs: dict[int, x509.Certificate] = {}
    manifest_members = []
    for r in members:
        progress(f"member {r.member_id}: certificate for {r.endpoint}")
        cert = ca.issue_member(r.member_id, r.tls_public_key())
        certs[r.member_id] = cert
        manifest_members.append(
            Member(r.member_id, r.endpoint, r.sign_key, r.seal_key, fingerprint(cert))
        )
    try:
        manifest = Manifest(0, threshold, fingerprint(ca.cert), tuple(manifest_members))
    except ManifestError as err:
        raise EnrolmentError(str(err)) from None
    if with_validator and chain_id is None:
        raise EnrolmentError("the members have validators: give the ledger's chain id")
    _write(out / MANIFEST, manifest.dumps().encode())
    _write(out / CA_CERT, cert_to_pem(ca.cert))
    for r in members:  # its certificate, and its request (what its peers dial)
        (out / f"member-{r.member_id}").mkdir()
        _write(out / f"member-{r.member_id}" / "cert.pem", cert_to_pem(certs[r.member_id]))
        _write(
            out / f"member-{r.member_id}" / REQUEST,
            json.dumps(r.to_json(), indent=2).encode() + b"\n",
        )
    admitted: dict[str, str] = {}
    for op in operators:
        progress(f"operator {op.name}: control-service certificate")
        (out / f"operator-{op.name}").mkdir()
        cert = ca.issue_operator(op.name, op.public_key())
        _write(out / f"operator-{op.name}" / "operator.pem", cert_to_pem(cert))
        admitted[fingerprint(cert)] = op.name
    OperatorList(admitted).save(out / OPERATORS)  # whom the members' control services admit
    ledger = None
    if chain_id is not None:
        ledger = LedgerCommittee(
            chain_id, {r.member_id: r.sign_key for r in members}, dict(ledger_operators or {})
        )
        _write(out / LEDGER_COMMITTEE, json.dumps(ledger.to_dict(), indent=2).encode() + b"\n")
        if with_validator:
            _write(out / GENESIS, json.dumps(_genesis(chain_id, members), indent=2).encode())
    return Bundle(manifest, ledger, bool(with_validator and ledger))


def _genesis(chain_id: str, members: Sequence[MemberRequest]) -> dict[str, Any]:
    """CometBFT's genesis: the validators with equal power, consensus parameters left to
    CometBFT's defaults (filled in by the node on load)."""
    return {
        "genesis_time": "2026-01-01T00:00:00Z",
        "chain_id": chain_id,
        "initial_height": "1",
        "validators": [
            {
                "address": r.validator.address,
                "pub_key": {"type": "tendermint/PubKeyEd25519", "value": r.validator.pub_key},
                "power": "10",
                "name": f"member{r.member_id}",
            }
            for r in members
            if r.validator is not None
        ],
        "app_hash": "",
    }


# ----------------------------------------------------------------------------- step 3
def install_member(directory: Path, bundle: Path, passphrase: bytes) -> Manifest:
    """Put the bundle's public files into member `directory`, after checking they are for its
    own keys. Installing the same bundle again changes nothing."""
    member_id = read_member_id(directory)
    try:
        manifest = Manifest.load(bundle / MANIFEST)
        member = manifest.member(member_id)
    except ManifestError as err:
        raise EnrolmentError(f"{bundle}: {err}") from None
    try:
        ca_pem = (bundle / CA_CERT).read_bytes()
        cert_pem = (bundle / f"member-{member_id}" / "cert.pem").read_bytes()
    except OSError as err:
        raise EnrolmentError(f"{bundle}: {err.strerror}: {err.filename}") from None
    try:
        ca, cert = cert_from_pem(ca_pem), cert_from_pem(cert_pem)
        who = identify(cert, ca)
    except PkiError as err:
        raise EnrolmentError(f"{bundle}: {err}") from None
    if fingerprint(ca) != manifest.ca_fingerprint:
        raise EnrolmentError(f"{bundle}/{CA_CERT} is not the manifest's committee CA")
    if who.member_id != member_id or who.fingerprint != member.tls_fingerprint:
        raise EnrolmentError(f"{bundle}: the certificate is not member {member_id}'s")
    keystore = Keystore.open(directory / "keystore", passphrase)
    identity = identity_from_bytes(member_id, keystore.get(IDENTITY_KEY_ID))
    if identity.public != member.keys:
        raise EnrolmentError(f"{bundle}: the manifest has other identity keys for {member_id}")
    tls_key = key_from_pem(keystore.get(TLS_KEY_ID))
    if tls_key.public_key() != cert.public_key():
        raise EnrolmentError(f"{bundle}: member {member_id}'s certificate is for another key")
    _write(directory / CA_CERT, ca_pem)
    _write(directory / "cert.pem", cert_pem)
    _write(directory / MANIFEST, manifest.dumps().encode())
    mine = directory / OPERATORS
    try:
        listed = OperatorList.load(bundle / OPERATORS)
        (OperatorList.load(mine).merged(listed) if mine.is_file() else listed).save(mine)
    except OperatorListError as err:
        raise EnrolmentError(str(err)) from None
    if (bundle / LEDGER_COMMITTEE).is_file():
        shutil.copyfile(bundle / LEDGER_COMMITTEE, directory / LEDGER_COMMITTEE)
    home = directory / COMETBFT_HOME
    if (bundle / GENESIS).is_file() and home.is_dir():
        _install_validator(directory, home, bundle, member_id)
    return manifest


def _install_validator(directory: Path, home: Path, bundle: Path, member_id: int) -> None:
    genesis = json.loads((bundle / GENESIS).read_text())
    own = read_request(directory / REQUEST)
    if not isinstance(own, MemberRequest) or own.validator is None:
        raise EnrolmentError(f"{directory}/{REQUEST} names no validator of this member")
    names = {v["pub_key"]["value"]: v["name"] for v in genesis["validators"]}
    if names.get(own.validator.pub_key) != f"member{member_id}":
        raise EnrolmentError(f"{bundle}/{GENESIS} does not hold member {member_id}'s validator")
    peers = []
    for path in sorted(bundle.glob("member-*/request.json")):
        peer = read_request(path)
        if isinstance(peer, MemberRequest) and peer.validator and peer.member_id != member_id:
            peers.append(f"{peer.validator.node_id}@{peer.validator.p2p}")
    shutil.copyfile(bundle / GENESIS, home / "config" / GENESIS)
    path = home / "config" / "config.toml"
    text = path.read_text()
    for section, key, value in (
        ("p2p", "laddr", f'"tcp://0.0.0.0:{own.validator.p2p.port}"'),
        ("p2p", "external_address", f'"{own.validator.p2p}"'),
        ("p2p", "persistent_peers", f'"{",".join(peers)}"'),
        ("p2p", "addr_book_strict", "false"),
        ("p2p", "pex", "false"),
        ("", "moniker", f'"member{member_id}"'),
    ):
        text = set_toml(text, section, key, value)
    path.write_text(text)
