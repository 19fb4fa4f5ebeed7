"""Signed, replay-protected envelopes and encrypted point-to-point payloads.

Wire shape (seed 000 §8.2, version 2): ``{session_id, kind, from, to, epoch, round,
sent_ms, nonce, payload, signature}``. The signature is Ed25519 by the sender's
identity key over a domain-separated canonical encoding of every other field, so a
relay can neither alter nor redirect a message. ``sent_ms`` (the sender's clock) and
an 8-byte random ``nonce`` make every send distinct, even of the same content after a
restart, and let a receiver keep its replay memory to a bounded time window. Session
ids are at most `MAX_SESSION_ID` bytes and kinds at most `MAX_KIND`; parsing is strict
(no trailing or missing bytes). Point-to-point payloads (DKG shares, reshare
sub-shares) are sealed to the recipient: ephemeral X25519, HKDF-SHA256 and
ChaCha20-Poly1305, with the envelope header as associated data.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field, replace

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

DOMAIN = b"synod/envelope/v2"
SEAL_INFO = b"synod/p2p-seal/v1"
BROADCAST = 0  # recipient id meaning "everyone in the session"
MAX_FIELD = 1 << 24
MAX_SESSION_ID = 64
MAX_KIND = 32
NONCE_LEN = 8


class EnvelopeError(ValueError):
    """Bytes that are not a well-formed envelope."""


def _raw(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class PeerKeys:
    """A node's public identity: Ed25519 for signatures, X25519 for sealed payloads."""

    node_id: int
    sign_key: bytes
    seal_key: bytes


@dataclass(frozen=True)
class Identity:
    """A node's private identity keys."""

    node_id: int
    sign_secret: Ed25519PrivateKey = field(repr=False)
    seal_secret: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, node_id: int) -> Identity:
        return cls(node_id, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, node_id: int, seed: bytes) -> Identity:
        """Deterministic identity (simulator and tests): both keys derived from `seed`."""
        s = hashlib.sha256(b"synod/identity" + seed + node_id.to_bytes(4, "big")).digest()
        x = hashlib.sha256(b"synod/identity-x25519" + s).digest()
        return cls(
            node_id,
            Ed25519PrivateKey.from_private_bytes(s),
            X25519PrivateKey.from_private_bytes(x),
        )

    @property
    def public(self) -> PeerKeys:
        return PeerKeys(
            self.node_id,
            _raw(self.sign_secret.public_key()),
            _raw(self.seal_secret.public_key()),
        )


@dataclass(frozen=True)
class Envelope:
    session_id: bytes
    kind: str
    sender: int
    recipient: int  # BROADCAST (0) or a node id
    epoch: int
    round: int
    payload: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)
    sent_ms: int = 0  # the sender's clock when it sent this envelope, in milliseconds
    nonce: bytes = field(default=b"", repr=False)  # NONCE_LEN random bytes, fresh per send

    def header(self) -> bytes:
        """Canonical encoding of everything but payload and signature (AEAD associated data)."""
        kind = self.kind.encode("utf-8")
        if len(self.session_id) > MAX_SESSION_ID or len(kind) > MAX_KIND:
            raise EnvelopeError("session id or kind too long")
        if len(self.nonce) != NONCE_LEN:
            raise EnvelopeError("an envelope needs its per-send nonce")
        return (
            DOMAIN
            + struct.pack(">B", len(self.session_id))
            + self.session_id
            + struct.pack(">B", len(kind))
            + kind
            + struct.pack(
                ">IIQIQ", self.sender, self.recipient, self.epoch, self.round, self.sent_ms
            )
            + self.nonce
        )

    def signed_bytes(self) -> bytes:
        return self.header() + struct.pack(">I", len(self.payload)) + self.payload

    def digest(self) -> bytes:
        """Identity of a message for replay detection (independent of the signature bytes)."""
        return hashlib.sha256(self.signed_bytes()).digest()

    def stamped(self, sent_ms: int | None = None) -> Envelope:
        """This envelope with a fresh per-send nonce (and a send time, if given)."""
        ms = self.sent_ms if sent_ms is None else sent_ms
        return replace(self, sent_ms=ms, nonce=os.urandom(NONCE_LEN), signature=b"")

    def sign(self, identity: Identity) -> Envelope:
        """Sign; an envelope without a nonce gets a fresh one first."""
        if identity.node_id != self.sender:
            raise ValueError("signing an envelope for another sender")
        env = self if len(self.nonce) == NONCE_LEN else self.stamped()
        return replace(env, signature=identity.sign_secret.sign(env.signed_bytes()))

    def verify(self, peer: PeerKeys) -> bool:
        if peer.node_id != self.sender or len(self.signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(peer.sign_key).verify(
                self.signature, self.signed_bytes()
            )
        except (InvalidSignature, EnvelopeError):
            return False
        return True

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse the wire form; any malformation raises `EnvelopeError`."""
        try:
            if not data.startswith(DOMAIN):
                raise EnvelopeError("bad domain tag")
            off = len(DOMAIN)
            n = data[off]
            off += 1
            if n > MAX_SESSION_ID:
                raise EnvelopeError("session id too long")
            session_id = data[off : off + n]
            off += n
            n = data[off]
            off += 1
            if n > MAX_KIND:
                raise EnvelopeError("kind too long")
            kind = data[off : off + n].decode("utf-8")
            off += n
            sender, recipient, epoch, rnd, sent_ms = struct.unpack_from(">IIQIQ", data, off)
            off += 28
            nonce = data[off : off + NONCE_LEN]
            off += NONCE_LEN
            (n,) = struct.unpack_from(">I", data, off)
            off += 4
            if n > MAX_FIELD:
                raise EnvelopeError("payload too large")
            payload = data[off : off + n]
            off += n
            signature = data[off:]
            if len(payload) != n or len(signature) != 64 or len(nonce) != NONCE_LEN:
                raise EnvelopeError("truncated envelope")
        except (struct.error, UnicodeDecodeError, IndexError) as err:
            raise EnvelopeError(f"malformed envelope: {err}") from None
        return cls(
            session_id, kind, sender, recipient, epoch, rnd, payload, signature, sent_ms, nonce
        )


def seal(recipient: PeerKeys, plaintext: bytes, associated: bytes) -> bytes:
    """Encrypt to the recipient's X25519 key: ephemeral key ‖ nonce ‖ ciphertext."""
    eph = X25519PrivateKey.generate()
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient.seal_key))
    eph_pub = _raw(eph.public_key())
    key = HKDF(hashes.SHA256(), 32, salt=eph_pub + recipient.seal_key, info=SEAL_INFO).derive(
        shared
    )
    nonce = os.urandom(12)
    return eph_pub + nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated)


def open_sealed(identity: Identity, sealed: bytes, associated: bytes) -> bytes | None:
    """Decrypt a sealed payload; None if it was not sealed to us or was altered."""
    if len(sealed) < 32 + 12 + 16:
        return None
    eph_pub, nonce, ct = sealed[:32], sealed[32:44], sealed[44:]
    try:
        shared = identity.seal_secret.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError:
        return None
    my_pub = identity.public.seal_key
    key = HKDF(hashes.SHA256(), 32, salt=eph_pub + my_pub, info=SEAL_INFO).derive(shared)
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ct, associated)
    except InvalidTag:
        return None
