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

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from synod.consensus.committee import DEFAULT_PERMISSIONS
from synod.consensus.committee import Committee as LedgerCommittee
from synod.consensus.committee import CommitteeError as LedgerCommitteeError
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
from synod.node.operators import OPERATORS, OperatorList
from synod.node.pki import (
    CommitteeCA,
    PkiError,
    cert_from_pem,
    cert_to_pem,
    fingerprint,
    identify,
    key_fingerprint,
    key_from_pem,
    key_to_pem,
    new_key,
    public_key_fingerprint,
)
from synod.protocols.envelope import Identity

REQUEST = "request.json"
SIGNATURE = "bundle.sig"  # the CA's signature over every other file of the bundle
MAX_BUNDLE_BYTES = 64 << 20
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


def _csr_key(csr_pem: bytes, common_name: str, who: str) -> ec.EllipticCurvePublicKey:
    """The EC key a CSR is for, once its self-signature verifies and it names `common_name`
    (a CSR copied from another request names someone else)."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        raise EnrolmentError(f"{who}: tls_csr is not a PEM CSR") from None
    if not csr.is_signature_valid:
        raise EnrolmentError(f"{who}: tls_csr signature does not verify")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [n.value for n in names] != [common_name]:
        raise EnrolmentError(f"{who}: tls_csr must name {common_name!r}")
    public = csr.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise EnrolmentError(f"{who}: tls_csr is not for an EC key")
    return public


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
        """The TLS key the request is for, once its self-signature and name are checked."""
        return _csr_key(self.csr_pem, f"synod member {self.member_id}", f"member {self.member_id}")

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
        return _csr_key(self.csr_pem, f"synod operator {self.name}", f"operator {self.name}")

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
        pub_key = _field(v, "pub_key", str, f"{where} validator")
        try:
            raw = base64.b64decode(pub_key, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise EnrolmentError(f"{where}: validator.pub_key must be 32 bytes in base64")
        address = hashlib.sha256(raw).hexdigest()[:40].upper()  # CometBFT's, of an Ed25519 key
        if _field(v, "address", str, f"{where} validator") != address:
            raise EnrolmentError(f"{where}: validator.address is not the address of pub_key")
        validator = Validator(pub_key, address, node_id, p2p)
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
VALIDATOR_INIT_TIMEOUT_S = 60.0


def _validator(home: Path, cometbft: Path, p2p: Endpoint) -> Validator:
    try:
        for args in (["init"], ["show-node-id"]):
            done = subprocess.run(
                [str(cometbft), *args, "--home", str(home)],
                check=True,
                capture_output=True,
                text=True,
                timeout=VALIDATOR_INIT_TIMEOUT_S,
            )
        node_id = done.stdout.strip()
        key = json.loads((home / "config" / "priv_validator_key.json").read_text())
        pub_key, address = str(key["pub_key"]["value"]), str(key["address"])
    except subprocess.CalledProcessError as err:
        why = (err.stderr or "").strip().splitlines()[-1:] or [f"status {err.returncode}"]
        raise EnrolmentError(f"{cometbft} {err.cmd[1]}: {why[0]}") from None
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, TypeError) as err:
        raise EnrolmentError(f"{cometbft}: the validator could not be made: {err}") from None
    return Validator(pub_key, address, node_id, p2p)


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
    existed = directory.exists()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return _init_member(directory, member_id, endpoint, passphrase, kdf, cometbft, p2p)
    except BaseException:  # leave nothing half made: the next try starts afresh
        for child in directory.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        if not existed:
            directory.rmdir()
        raise


def _init_member(
    directory: Path,
    member_id: int,
    endpoint: Endpoint,
    passphrase: bytes,
    kdf: KdfParams,
    cometbft: Path | None,
    p2p: Endpoint | None,
) -> MemberRequest:
    identity = Identity.generate(member_id)
    tls_key = new_key()
    keystore = Keystore.create(directory / "keystore", member_id, passphrase, kdf)
    secret = identity.sign_secret.private_bytes_raw() + identity.seal_secret.private_bytes_raw()
    keystore.put(IDENTITY_KEY_ID, SecretKind.IDENTITY, 0, secret)
    keystore.put(TLS_KEY_ID, SecretKind.TLS_KEY, 0, key_to_pem(tls_key))
    atomic_write(directory / "node.json", _json({"member_id": member_id}), 0o644)
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
    atomic_write(directory / REQUEST, _json(request.to_json()), 0o644)
    return request


def init_operator(directory: Path, name: str) -> OperatorRequest:
    """An operator's control-service key (mode 0600, on the operator's machine) and request."""
    if not _OPERATOR_NAME.fullmatch(name):
        raise EnrolmentError(f"operator name must be lowercase letters, digits, '-' ({name!r})")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (directory / "operator.key.pem").exists():
        raise EnrolmentError(f"{directory}/operator.key.pem already exists")
    key = new_key()
    atomic_write(directory / "operator.key.pem", key_to_pem(key), 0o600)
    request = OperatorRequest(name, _csr(key, f"synod operator {name}"))
    atomic_write(directory / REQUEST, _json(request.to_json()), 0o644)
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
    atomic_write(directory / CA_KEY, pem, 0o600)
    atomic_write(directory / CA_CERT, cert_to_pem(ca.cert), 0o644)
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


def _unique(field: str, values: list[Any]) -> None:
    if len(set(values)) != len(values):
        raise EnrolmentError(f"two requests share the same {field}")


def bundle_digest(files: dict[str, bytes]) -> bytes:
    """What the CA signs: every file of the bundle (but the signature), by name and hash."""
    h = hashlib.sha256(b"synod/bundle/v1\n")
    for name in sorted(files):
        if name != SIGNATURE:
            h.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.digest()


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
    material goes in and comes out, and the CA signs the whole of it (`bundle.sig`), so a
    member installs it only as the committee CA's. With `chain_id`, also the replicated
    ledger's committee file (the members' identity keys, `ledger_operators`' request-signing
    keys) and, when the members have validators, the CometBFT genesis. Everything is checked
    before anything is written."""
    if out.exists() and any(out.iterdir()):
        raise EnrolmentError(f"{out} exists and is not empty")
    members = sorted(
        (r for r in requests if isinstance(r, MemberRequest)), key=lambda r: r.member_id
    )
    operators = [r for r in requests if isinstance(r, OperatorRequest)]
    if not members:
        raise EnrolmentError("no member requests")
    member_keys = {r.member_id: r.tls_public_key() for r in members}  # each CSR checked once
    operator_keys = {r.name: r.public_key() for r in operators}
    tls_keys = [public_key_fingerprint(k) for k in [*member_keys.values(), *operator_keys.values()]]
    _unique("id", [r.member_id for r in members])
    _unique("endpoint", [str(r.endpoint) for r in members])
    _unique("sign_key", [r.sign_key for r in members])
    _unique("seal_key", [r.seal_key for r in members])
    _unique("operator name", [r.name for r in operators])
    _unique("TLS key", tls_keys)
    validators = [r.validator for r in members if r.validator is not None]
    if validators and len(validators) != len(members):
        raise EnrolmentError(
            "either every member has a validator or none: "
            f"{sorted(r.member_id for r in members if r.validator is None)} have none"
        )
    _unique("validator key", [v.pub_key for v in validators])
    _unique("validator node id", [v.node_id for v in validators])
    _unique("validator P2P address", [str(v.p2p) for v in validators])
    if validators and chain_id is None:
        raise EnrolmentError("the members have validators: give the ledger's chain id")
    ledger = None
    if chain_id is not None:
        try:
            ledger = LedgerCommittee(
                chain_id, {r.member_id: r.sign_key for r in members}, dict(ledger_operators or {})
            )
        except LedgerCommitteeError as err:
            raise EnrolmentError(f"the ledger's committee: {err}") from None
    files: dict[str, bytes] = {CA_CERT: cert_to_pem(ca.cert)}
    manifest_members = []
    for r in members:
        progress(f"member {r.member_id}: certificate for {r.endpoint}")
        cert = ca.issue_member(r.member_id, member_keys[r.member_id])
        files[f"member-{r.member_id}/cert.pem"] = cert_to_pem(cert)
        files[f"member-{r.member_id}/{REQUEST}"] = _json(r.to_json())  # what its peers dial
        manifest_members.append(
            Member(r.member_id, r.endpoint, r.sign_key, r.seal_key, fingerprint(cert))
        )
    try:
        manifest = Manifest(0, threshold, fingerprint(ca.cert), tuple(manifest_members))
    except ManifestError as err:
        raise EnrolmentError(str(err)) from None
    files[MANIFEST] = manifest.dumps().encode()
    admitted: dict[str, str] = {}
    for op in operators:
        progress(f"operator {op.name}: control-service certificate")
        cert = ca.issue_operator(op.name, operator_keys[op.name])
        files[f"operator-{op.name}/operator.pem"] = cert_to_pem(cert)
        admitted[key_fingerprint(cert)] = op.name
    files[OPERATORS] = OperatorList(admitted).dumps().encode()  # whom control services admit
    if ledger is not None:
        files[LEDGER_COMMITTEE] = _json(ledger.to_dict())
        if validators and chain_id is not None:
            files[GENESIS] = _json(_genesis(chain_id, members))
    signature = ca.key.sign(bundle_digest(files), ec.ECDSA(hashes.SHA256()))
    files[SIGNATURE] = signature.hex().encode() + b"\n"
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).parent.mkdir(exist_ok=True)
        atomic_write(out / name, data, 0o644)
    return Bundle(manifest, ledger, bool(validators and ledger))


def _json(doc: Any) -> bytes:
    return json.dumps(doc, indent=2).encode() + b"\n"


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
def _read_bundle(bundle: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    try:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                total += len(data)
                if total > MAX_BUNDLE_BYTES:
                    raise EnrolmentError(f"{bundle}: larger than {MAX_BUNDLE_BYTES} bytes")
                files[str(path.relative_to(bundle))] = data
    except OSError as err:
        raise EnrolmentError(f"{bundle}: {err.strerror}: {err.filename}") from None
    return files


def install_member(
    directory: Path, bundle: Path, passphrase: bytes, ca_fingerprint: str | None = None
) -> Manifest:
    """Put the bundle's public files into member `directory`, after checking everything: the
    bundle is signed by the committee CA (the one whose certificate's SHA-256 is
    `ca_fingerprint`, learned out of band, or the one this member installed before; a member
    never changes CAs by installing), it names this member with the keys in its keystore and
    a certificate for its TLS key, its ledger committee lists exactly the manifest's members
    with the default quorum and permissions, and its genesis exactly their validators.
    Nothing is written unless all of that holds; installing the same bundle again changes
    nothing."""
    try:
        return _install(directory, bundle, passphrase, ca_fingerprint)
    except EnrolmentError:
        raise
    except (CommitteeError, ValueError, KeyError, TypeError, PkiError) as err:
        raise EnrolmentError(f"{bundle}: {err}") from None


def _install(
    directory: Path, bundle: Path, passphrase: bytes, ca_fingerprint: str | None
) -> Manifest:
    member_id = read_member_id(directory)
    files = _read_bundle(bundle)
    for needed in (MANIFEST, CA_CERT, SIGNATURE, OPERATORS, f"member-{member_id}/cert.pem"):
        if needed not in files:
            raise EnrolmentError(f"{bundle}: no {needed}")
    ca = cert_from_pem(files[CA_CERT])
    installed = directory / CA_CERT
    trusted = fingerprint(cert_from_pem(installed.read_bytes())) if installed.is_file() else None
    expected = trusted or (ca_fingerprint or "").lower()
    if not expected:
        raise EnrolmentError("give the committee CA's fingerprint (learned out of band)")
    if trusted and ca_fingerprint and ca_fingerprint.lower() != trusted:
        raise EnrolmentError(f"{directory} already trusts another committee CA")
    if fingerprint(ca) != expected:
        raise EnrolmentError(f"{bundle}/{CA_CERT} is not the committee CA {expected[:16]}…")
    try:
        signature = bytes.fromhex(files[SIGNATURE].decode().strip())
        public = ca.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        public.verify(signature, bundle_digest(files), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, UnicodeDecodeError):
        raise EnrolmentError(f"{bundle}: not signed by the committee CA (altered?)") from None
    manifest = Manifest.from_json(json.loads(files[MANIFEST]))
    member = manifest.member(member_id)
    cert = cert_from_pem(files[f"member-{member_id}/cert.pem"])
    who = identify(cert, ca)
    if fingerprint(ca) != manifest.ca_fingerprint:
        raise EnrolmentError(f"{bundle}/{CA_CERT} is not the manifest's committee CA")
    if who.member_id != member_id or who.fingerprint != member.tls_fingerprint:
        raise EnrolmentError(f"{bundle}: the certificate is not member {member_id}'s")
    keystore = Keystore.open(directory / "keystore", passphrase)
    identity = identity_from_bytes(member_id, keystore.get(IDENTITY_KEY_ID))
    if identity.public != member.keys:
        raise EnrolmentError(f"{bundle}: the manifest has other identity keys for {member_id}")
    if key_from_pem(keystore.get(TLS_KEY_ID)).public_key() != cert.public_key():
        raise EnrolmentError(f"{bundle}: member {member_id}'s certificate is for another key")
    listed = OperatorList.parse(files[OPERATORS], f"{bundle}/{OPERATORS}")
    ledger = files.get(LEDGER_COMMITTEE)
    if ledger is not None:
        _check_ledger(LedgerCommittee.from_dict(json.loads(ledger)), manifest, bundle)
    validator_config = None
    home = directory / COMETBFT_HOME
    if GENESIS in files and home.is_dir():
        validator_config = _validator_config(directory, home, files, member_id, bundle)
    # everything checked: write
    atomic_write(directory / CA_CERT, files[CA_CERT], 0o644)
    atomic_write(directory / "cert.pem", files[f"member-{member_id}/cert.pem"], 0o644)
    atomic_write(directory / MANIFEST, manifest.dumps().encode(), 0o644)
    mine = directory / OPERATORS
    (OperatorList.load(mine).merged(listed) if mine.is_file() else listed).save(mine)
    if ledger is not None:
        atomic_write(directory / LEDGER_COMMITTEE, ledger, 0o644)
    if validator_config is not None:
        atomic_write(home / "config" / GENESIS, files[GENESIS], 0o644)
        atomic_write(home / "config" / "config.toml", validator_config.encode(), 0o644)
    return manifest


def _check_ledger(ledger: LedgerCommittee, manifest: Manifest, bundle: Path) -> None:
    """The ledger's committee is the manifest's members with their identity keys, and the
    rules every member must share: the default quorum and permissions."""
    members = {m.id: m.sign_key for m in manifest.members}
    if dict(ledger.members) != members:
        raise EnrolmentError(f"{bundle}/{LEDGER_COMMITTEE}: not the manifest's members")
    if ledger.quorum != 0 or dict(ledger.permissions) != dict(DEFAULT_PERMISSIONS):
        raise EnrolmentError(f"{bundle}/{LEDGER_COMMITTEE}: not the default quorum and rules")


def _validator_config(
    directory: Path, home: Path, files: dict[str, bytes], member_id: int, bundle: Path
) -> str:
    """The member's validator config with its peers, once the genesis holds exactly the
    members' validators (as their requests in the bundle name them)."""
    own = read_request(directory / REQUEST)
    if not isinstance(own, MemberRequest) or own.validator is None:
        raise EnrolmentError(f"{directory}/{REQUEST} names no validator of this member")
    requests = {}
    for name, data in files.items():
        if name.startswith("member-") and name.endswith(f"/{REQUEST}"):
            peer = parse_request(data, f"{bundle}/{name}")
            if isinstance(peer, MemberRequest) and peer.validator is not None:
                requests[peer.member_id] = peer.validator
    genesis = json.loads(files[GENESIS])
    listed = {
        (str(v["pub_key"]["value"]), str(v["address"]), str(v["name"]))
        for v in genesis["validators"]
    }
    wanted = {(v.pub_key, v.address, f"member{i}") for i, v in requests.items()}
    if listed != wanted or requests.get(member_id) != own.validator:
        raise EnrolmentError(f"{bundle}/{GENESIS}: not exactly the members' validators")
    peers = [f"{v.node_id}@{v.p2p}" for i, v in sorted(requests.items()) if i != member_id]
    text = (home / "config" / "config.toml").read_text()
    for section, key, value in (
        ("p2p", "laddr", f'"tcp://0.0.0.0:{own.validator.p2p.port}"'),
        ("p2p", "external_address", f'"{own.validator.p2p}"'),
        ("p2p", "persistent_peers", f'"{",".join(peers)}"'),
        ("p2p", "addr_book_strict", "false"),
        ("p2p", "pex", "false"),
        ("", "moniker", f'"member{member_id}"'),
    ):
        text = set_toml(text, section, key, value)
    return text
