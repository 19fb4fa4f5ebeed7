"""The wire form of a transaction on the replicated ledger: the body, who sent it, a signature.

``{"v": 1, "signer": "member:3" | "operator:api", "tx": {...}, "sig": hex}`` as canonical JSON.
The Ed25519 signature covers a domain tag, the chain id, the signer and the body's canonical
bytes, so a signature on one chain or for one signer is worthless on another. The body is a
ledger transaction (`synod.state.transactions`) or an `Attest`, the consensus layer's own kind.
Everything here is a pure function of the bytes: every node decides the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from synod.consensus.committee import ATTEST, Committee
from synod.state.errors import MalformedTransaction
from synod.state.transactions import VERDICTS, Tx, parse_tx

DOMAIN = b"synod/ledger-tx/v1"
MAX_TX_BYTES = (1 << 20) + (1 << 16)  # a Signed body may carry 1 MiB of signatures
VALID, FORGED = VERDICTS
MAX_DEPTH = 16  # a transaction nests 3 deep; JSON nested deeper is refused unparsed
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects, strings skipped (a regex scan, no recursion)."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return 0  # cannot be deeper than that
    depth = deepest = 0
    for m in _TOKENS.finditer(raw):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


@dataclass(frozen=True)
class Attest(Tx):
    """A member's verdict on a pending `Requeue` proof, re-checked against its own chain node."""

    KIND: ClassVar[str] = ATTEST
    target: str  # the Requeue's tx id
    verdict: str  # VALID or FORGED

    def rules(self) -> None:
        try:
            bytes.fromhex(self.target)
        except ValueError:
            raise MalformedTransaction(
                "target must be a transaction id (64 hex characters)"
            ) from None
        if len(self.target) != 64:
            raise MalformedTransaction("target must be a transaction id (64 hex characters)")


class Unauthorized(MalformedTransaction):
    """Unsigned, a bad signature, not a member, or a kind the signer may not submit."""

    reason = "unauthorized"


def signing_message(chain_id: str, signer: str, body: bytes) -> bytes:
    """The bytes a submitter signs: the domain, the chain, the signer and the canonical body."""
    return b"\0".join((DOMAIN, chain_id.encode(), signer.encode(), body))


def parse_body(body: Any) -> Tx:
    if isinstance(body, dict) and body.get("kind") == ATTEST:
        if set(body) != {"kind", "target", "verdict"}:
            raise MalformedTransaction("attest: fields are target and verdict")
        tx: Tx = Attest(body["target"], body["verdict"])
        tx.validate()
        return tx
    return parse_tx(body)


@dataclass(frozen=True)
class SignedTx:
    signer: str
    tx: Tx
    signature: bytes

    @classmethod
    def sign(cls, tx: Tx, signer: str, key: Ed25519PrivateKey, chain_id: str) -> SignedTx:
        tx.validate()
        return cls(signer, tx, key.sign(signing_message(chain_id, signer, tx.canonical())))

    def encode(self) -> bytes:
        return json.dumps(
            {"v": 1, "signer": self.signer, "tx": self.tx.body(), "sig": self.signature.hex()},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, raw: bytes) -> SignedTx:
        """Parse and check the shape (not the signature); raises `MalformedTransaction`."""
        if len(raw) > MAX_TX_BYTES:
            raise MalformedTransaction(f"{len(raw)} bytes, more than {MAX_TX_BYTES}")
        if _depth(raw) > MAX_DEPTH:  # before the parser recurses into it
            raise MalformedTransaction(f"nested deeper than {MAX_DEPTH}")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise MalformedTransaction("not JSON") from None
        if not isinstance(data, dict) or set(data) != {"v", "signer", "tx", "sig"}:
            raise Unauthorized("a signed transaction has exactly v, signer, tx and sig")
        if data["v"] != 1:
            raise MalformedTransaction(f"unknown version {data['v']!r}")
        signer, sig = data["signer"], data["sig"]
        if not isinstance(signer, str) or not 0 < len(signer) <= 64:
            raise Unauthorized("signer must be 'member:<id>' or 'operator:<name>'")
        if not isinstance(sig, str) or len(sig) != 128:
            raise Unauthorized("sig must be 64 bytes of hex")
        try:
            signature = bytes.fromhex(sig)
        except ValueError:
            raise Unauthorized("sig must be hex") from None
        return cls(signer, parse_body(data["tx"]), signature)

    def authorize(self, committee: Committee) -> None:
        """Signed by a listed key, and the signer's role may submit this kind."""
        key = committee.public_key(self.signer)
        if key is None:
            raise Unauthorized(f"{self.signer} is not in the committee")
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(
                self.signature,
                signing_message(committee.chain_id, self.signer, self.tx.canonical()),
            )
        except InvalidSignature:
            raise Unauthorized(f"bad signature by {self.signer}") from None
        if not committee.may_submit(self.signer, self.tx.KIND):
            raise Unauthorized(f"{self.signer} may not submit {self.tx.KIND}")

    @property
    def member(self) -> int | None:
        role, _, name = self.signer.partition(":")
        return int(name) if role == "member" and name.isascii() and name.isdigit() else None
