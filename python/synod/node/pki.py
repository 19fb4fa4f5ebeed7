"""The committee's TLS certificates: a CA, member certificates and an operator certificate.

A development committee has its own CA. Every member certificate names its
member id twice: a SAN URI ``synod-member:<id>`` (read by the accepting side
from the gRPC auth context) and a SAN DNS name ``member-<id>.synod`` (checked
by the dialing side through TLS name verification). The operator's client
certificate (for the control service) carries ``synod-operator:<name>`` and is
good for client authentication only, so it can never pass as a member.
Keys are ECDSA P-256: every TLS stack gRPC uses accepts them.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MEMBER_URI = "synod-member:"
OPERATOR_URI = "synod-operator:"
VALIDITY = datetime.timedelta(days=3650)
_OPERATOR_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class PkiError(ValueError):
    """A certificate that is not what the committee issued."""


class Role(enum.Enum):
    MEMBER = "member"
    OPERATOR = "operator"


@dataclass(frozen=True)
class CertIdentity:
    """Who a verified peer certificate names."""

    role: Role
    member_id: int | None  # for Role.MEMBER
    name: str  # operator name, or the member id as text
    fingerprint: str  # SHA-256 of the DER certificate, hex


def member_dns_name(member_id: int) -> str:
    """The TLS name a dialing member expects from member `member_id`."""
    return f"member-{member_id}.synod"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_fingerprint(key: Any) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo DER: the same for every certificate ever
    issued for that key (a certificate's own fingerprint changes with its serial number)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def key_fingerprint(cert: x509.Certificate) -> str:
    """`public_key_fingerprint` of the key a certificate is for."""
    return public_key_fingerprint(cert.public_key())


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_from_pem(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError:
        raise PkiError("not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError("TLS key is not an ECDSA key")
    return key


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise PkiError("not a PEM certificate") from None


@dataclass(frozen=True)
class CommitteeCA:
    """The committee CA: its key signs member and operator certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def __repr__(self) -> str:
        return f"CommitteeCA(fingerprint={fingerprint(self.cert)[:16]}…)"

    @classmethod
    def create(cls, name: str = "synod committee CA") -> CommitteeCA:
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def _leaf(
        self,
        public: ec.EllipticCurvePublicKey,
        common_name: str,
        names: list[x509.GeneralName],
        usages: list[x509.ObjectIdentifier],
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue_member(self, member_id: int, public: ec.EllipticCurvePublicKey) -> x509.Certificate:
        """A member certificate: server and client authentication, naming `member_id`."""
        if member_id < 1:
            raise PkiError(f"member id must be positive (got {member_id})")
        return self._leaf(
            public,
            f"synod member {member_id}",
            [
                x509.UniformResourceIdentifier(f"{MEMBER_URI}{member_id}"),
                x509.DNSName(member_dns_name(member_id)),
            ],
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        )

    def issue_operator(self, name: str, public: ec.EllipticCurvePublicKey) -> x509.Certificate:
        """The operator's client certificate for the control service (never a member)."""
        if not _OPERATOR_NAME.fullmatch(name):
            raise PkiError(f"operator name must be lowercase letters, digits, '-' (got {name!r})")
        return self._leaf(
            public,
            f"synod operator {name}",
            [x509.UniformResourceIdentifier(f"{OPERATOR_URI}{name}")],
            [ExtendedKeyUsageOID.CLIENT_AUTH],
        )


def identify(cert: x509.Certificate, ca_cert: x509.Certificate) -> CertIdentity:
    """The role and member id a certificate issued by `ca_cert` names; `PkiError` otherwise."""
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PkiError("certificate not issued by the committee CA") from None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PkiError("certificate has no subject alternative name") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    members = [u[len(MEMBER_URI) :] for u in uris if u.startswith(MEMBER_URI)]
    operators = [u[len(OPERATOR_URI) :] for u in uris if u.startswith(OPERATOR_URI)]
    fp = fingerprint(cert)
    if len(members) + len(operators) != 1:
        raise PkiError("certificate must name exactly one member or operator")
    if operators:
        return CertIdentity(Role.OPERATOR, None, operators[0], fp)
    text = members[0]
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or int(text) < 1:
        raise PkiError("certificate names an invalid member id")
    return CertIdentity(Role.MEMBER, int(text), text, fp)


def peer_certificate(auth_context: Any) -> x509.Certificate | None:
    """The client certificate of a gRPC call, from `context.auth_context()`; None if absent."""
    pems = auth_context.get("x509_pem_cert") if hasattr(auth_context, "get") else None
    if not pems:
        return None
    try:
        return x509.load_pem_x509_certificate(bytes(pems[0]))
    except ValueError:
        return None
