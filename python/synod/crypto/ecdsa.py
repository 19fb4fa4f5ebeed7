"""Threshold ECDSA (CGGMP21) over secp256k1, on the audited ``cggmp21`` crate.

The flow is the crate's: every party once generates Paillier primes (slow) and runs
*aux info generation* with the others; the group runs *threshold keygen* (HD-enabled, so
non-hardened BIP32 children of the group key can sign); aux info + incomplete share make a
``KeyShare``. Any ``t`` parties then either *sign interactively* or run *presigning* ahead
of time and later sign without interaction: each issues a ``PartialSignature`` from its
single-use ``Presignature`` and anyone ``combine``\\s them.

Interactive protocols are ``Session`` objects driven by the caller: ``outgoing()`` drains
``(recipient, message)`` pairs (``None`` = broadcast), ``receive(sender, broadcast,
message)`` feeds one in, ``done``/``output`` report the result. Parties are always named
by their keygen index. The transport must authenticate senders and encrypt p2p messages.
``local_*`` helpers run a protocol among in-process parties (tests, ceremonies, benches).

Messages are 32-byte digests (keccak256 for Ethereum, SHA-256d for Bitcoin, ...).
Signatures are low-s. Every object serializes to versioned bytes (``synod.crypto.encoding``).
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Generic, Self, TypeVar

from synod import _core
from synod.crypto import encoding
from synod.crypto.errors import (
    DecodeError,
    InvalidParametersError,
    ProtocolError,
    core_errors,
)

#: Order of the secp256k1 group.
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
#: First hardened BIP32 index; derivation here is non-hardened only (no one holds the key).
HARDENED = 1 << 31

_PREFIX = "cggmp:secp256k1:"

_T = TypeVar("_T")


def _new_eid() -> bytes:
    return os.urandom(32)


def _check_digest(digest: bytes) -> bytes:
    if not isinstance(digest, bytes | bytearray) or len(digest) != 32:
        raise InvalidParametersError("the message to sign is a 32-byte digest")
    return bytes(digest)


def _check_path(path: Iterable[int]) -> list[int]:
    out = [int(i) for i in path]
    for i in out:
        if not 0 <= i < HARDENED:
            raise InvalidParametersError(f"path index {i} is not a non-hardened BIP32 index")
    return out


# ---------------------------------------------------------------------------
# Serialized crate objects
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob(ABC):
    """A crate serialization; ``from_raw`` has the crate parse it before anything trusts it."""

    KIND: ClassVar[str] = ""
    raw: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return encoding.wrap(_PREFIX + self.KIND, self.raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls.from_raw(encoding.unwrap(_PREFIX + cls.KIND, data))

    @classmethod
    @abstractmethod
    def from_raw(cls, raw: bytes) -> Self:
        """Have the crate parse `raw`, then wrap it."""


@dataclass(frozen=True)
class Primes(_Blob):
    """Two safe primes for one party's Paillier key. SECRET; generate once per party (slow)."""

    KIND: ClassVar[str] = "primes"

    @classmethod
    def generate(cls) -> Primes:
        """Fresh primes from the OS RNG; takes tens of seconds (releases the GIL)."""
        with core_errors():
            return cls(bytes(_core.ecdsa_generate_primes()))

    @classmethod
    def from_raw(cls, raw: bytes) -> Self:
        with core_errors():
            _core.ecdsa_primes_validate(bytes(raw))
        return cls(bytes(raw))


def generate_primes(n: int, on_ready: Callable[[int], None] | None = None) -> list[Primes]:
    """Fresh primes for `n` parties, as many at a time as there are cores (each party's
    search releases the GIL); `on_ready(k)` after the k-th. What every party does on its
    own machine, run side by side here (the local ceremony and the benchmarks)."""
    workers = max(1, min(n, os.cpu_count() or 1))
    done: list[Primes] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for primes in pool.map(lambda _: Primes.generate(), range(n)):
            done.append(primes)
            if on_ready is not None:
                on_ready(len(done))
    return done


def load_primes(path: str | Path) -> list[Primes]:
    """Read a primes file: JSON ``{"primes": [hex of Primes.to_bytes(), ...]}``, one per party.

    The primes are Paillier SECRETS: a file of them is for tests and demos only.
    """
    try:
        doc = json.loads(Path(path).read_text())
        return [Primes.from_bytes(bytes.fromhex(h)) for h in doc["primes"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise InvalidParametersError(f"cannot read primes from {path}: {err}") from None


@dataclass(frozen=True)
class AuxInfo(_Blob):
    """A party's Paillier secret key plus every party's public Paillier/ring-Pedersen data.

    SECRET. Reusable for several keys of the same ``n`` parties (same indices).
    """

    KIND: ClassVar[str] = "aux_info"
    n: int = 0

    @classmethod
    def from_raw(cls, raw: bytes) -> Self:
        with core_errors():
            n = _core.ecdsa_aux_info_info(bytes(raw))
        return cls(bytes(raw), n)


@dataclass(frozen=True)
class ExtendedPublicKey:
    """Group public key (33-byte compressed SEC1) with its BIP32 chain code."""

    public_key: bytes
    chain_code: bytes

    KIND: ClassVar[str] = "xpub"

    def derive(self, path: Iterable[int]) -> ExtendedPublicKey:
        """Non-hardened BIP32 child along ``path`` (the crate's SLIP-10, equal to CKDpub)."""
        with core_errors():
            pk, cc = _core.ecdsa_derive_public_key(
                self.public_key, self.chain_code, _check_path(path)
            )
        return ExtendedPublicKey(bytes(pk), bytes(cc))

    def to_bytes(self) -> bytes:
        return encoding.wrap(_PREFIX + self.KIND, self.public_key + self.chain_code)

    @classmethod
    def from_bytes(cls, data: bytes) -> ExtendedPublicKey:
        raw = encoding.unwrap(_PREFIX + cls.KIND, data)
        if len(raw) != 65:
            raise DecodeError("xpub: expected 33-byte key and 32-byte chain code")
        xpub = cls(raw[:33], raw[33:])
        xpub.derive([])  # has the crate parse the point
        return xpub


@dataclass(frozen=True)
class _ShareBlob(_Blob):
    index: int = 0
    n: int = 0
    threshold: int = 0
    public_key: bytes = b""
    chain_code: bytes | None = None

    @classmethod
    @abstractmethod
    def _info(cls, raw: bytes) -> tuple[int, int, int, bytes, bytes | None]:
        """(index, n, threshold, public key, chain code) as the crate reads them."""

    @classmethod
    def from_raw(cls, raw: bytes) -> Self:
        with core_errors():
            i, n, t, pk, cc = cls._info(bytes(raw))
        return cls(bytes(raw), i, n, t, bytes(pk), None if cc is None else bytes(cc))

    @property
    def extended_public_key(self) -> ExtendedPublicKey:
        if self.chain_code is None:
            raise InvalidParametersError("key was generated without HD support")
        return ExtendedPublicKey(self.public_key, self.chain_code)

    def derive_public_key(self, path: Iterable[int]) -> bytes:
        """Compressed public key of the non-hardened child at ``path`` (``[]`` = group key)."""
        return self.extended_public_key.derive(path).public_key


@dataclass(frozen=True)
class IncompleteKeyShare(_ShareBlob):
    """Output of keygen alone: the secret share without aux info. SECRET."""

    KIND: ClassVar[str] = "incomplete_key_share"

    @classmethod
    def _info(cls, raw: bytes) -> tuple[int, int, int, bytes, bytes | None]:
        return _core.ecdsa_incomplete_key_share_info(raw)


@dataclass(frozen=True)
class KeyShare(_ShareBlob):
    """A party's complete signing share (secret share + aux info). SECRET."""

    KIND: ClassVar[str] = "key_share"

    @classmethod
    def _info(cls, raw: bytes) -> tuple[int, int, int, bytes, bytes | None]:
        return _core.ecdsa_key_share_info(raw)

    @classmethod
    def from_parts(cls, incomplete: IncompleteKeyShare, aux: AuxInfo) -> KeyShare:
        """Join keygen output and aux info; the crate checks they belong to the same party."""
        with core_errors():
            raw = _core.ecdsa_key_share_from_parts(incomplete.raw, aux.raw)
        return cls.from_raw(bytes(raw))


@dataclass(frozen=True)
class PartialSignature(_Blob):
    """One signer's contribution from a presignature; not secret."""

    KIND: ClassVar[str] = "partial_signature"
    index: int = 0

    @classmethod
    def from_raw(cls, raw: bytes) -> Self:
        with core_errors():
            index = _core.ecdsa_partial_signature_info(bytes(raw))
        return cls(bytes(raw), index)


@dataclass(frozen=True)
class Signature:
    """A low-s ECDSA signature with the recovery id (parity of R.y) Ethereum needs."""

    r: int
    s: int
    recovery_id: int

    KIND: ClassVar[str] = "signature"

    def __post_init__(self) -> None:
        if not (0 < self.r < CURVE_ORDER and 0 < self.s <= CURVE_ORDER // 2):
            raise DecodeError("signature: r, s out of range or s not low")
        if self.recovery_id not in (0, 1):
            raise DecodeError("signature: recovery id must be 0 or 1")

    def to_bytes(self) -> bytes:
        """The 64-byte ``r || s`` form most verifiers take."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")

    def to_recoverable(self) -> bytes:
        """65 bytes ``r || s || v`` with ``v`` in {0, 1}."""
        return self.to_bytes() + bytes([self.recovery_id])

    @classmethod
    def from_recoverable(cls, data: bytes) -> Signature:
        if len(data) != 65:
            raise DecodeError("recoverable signature: expected 65 bytes")
        r, s = int.from_bytes(data[:32], "big"), int.from_bytes(data[32:64], "big")
        return cls(r, s, data[64])

    @classmethod
    def from_rs(cls, rs: bytes, public_key: bytes, digest: bytes) -> Signature:
        """Parse ``r || s`` and compute the recovery id against the key it verifies under."""
        with core_errors():
            v = _core.ecdsa_recovery_id(public_key, _check_digest(digest), bytes(rs))
        return cls(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"), v)

    def encode(self) -> bytes:
        """Versioned bytes for storage (the recoverable form)."""
        return encoding.wrap(_PREFIX + self.KIND, self.to_recoverable())

    @classmethod
    def decode(cls, data: bytes) -> Signature:
        return cls.from_recoverable(encoding.unwrap(_PREFIX + cls.KIND, data))

    def verify(self, public_key: bytes, digest: bytes) -> bool:
        """Check with the crate's verifier under a 33-byte compressed key."""
        with core_errors():
            return _core.ecdsa_verify(public_key, _check_digest(digest), self.to_bytes())


class Presignature:
    """A presignature: one partial signature on any message later, without interaction.

    Usable ONCE (a second use raises ``PresignatureUsedError``): two signatures from one
    presignature reveal the key. There is deliberately no ``to_bytes``/``from_bytes``:
    a copy would be a second usable presignature. To keep one across restarts, move it into
    the node's store (``SessionStore.put_presignature``, which uses this object up) and take
    it back by id (``take_presignature`` erases it in the same durable transaction).
    """

    KIND: ClassVar[str] = "presignature"

    def __init__(self, core: _core.EcdsaPresignature) -> None:
        self._core = core

    def __repr__(self) -> str:
        if self.used:
            return "Presignature(used)"
        return f"Presignature(index={self.index}, signers={self.signers})"

    @property
    def used(self) -> bool:
        return self._core.is_used()

    @property
    def index(self) -> int:
        with core_errors():
            return self._core.index

    @property
    def signers(self) -> tuple[int, ...]:
        with core_errors():
            return tuple(self._core.signers)

    @property
    def extended_public_key(self) -> ExtendedPublicKey:
        with core_errors():
            return ExtendedPublicKey(bytes(self._core.public_key), bytes(self._core.chain_code))

    def sign(self, digest: bytes, path: Iterable[int] = ()) -> PartialSignature:
        """Consume the presignature: partial signature on ``digest`` for the child at ``path``."""
        d, p = _check_digest(digest), _check_path(path)
        with core_errors():
            raw = self._core.issue_partial(d, p)
        return PartialSignature.from_raw(bytes(raw))


def move_presignature_out(presignature: Presignature) -> bytes:
    """Move ``presignature`` into bytes for a single-use store; the object is used up.

    Only a store that erases the bytes when it hands them back may call this: the bytes are
    the one remaining copy. (``synod.state.session_store.SessionStore`` is that store.)
    """
    with core_errors():
        raw = bytes(presignature._core.move_out())
    return encoding.wrap(_PREFIX + Presignature.KIND, raw)


def _presignature_from_store(data: bytes) -> Presignature:
    """Rebuild a presignature from the bytes a single-use store just erased (its ``take``)."""
    raw = encoding.unwrap(_PREFIX + Presignature.KIND, data)
    with core_errors():
        return Presignature(_core.ecdsa_presignature_restore(raw))


def sign_with_presignature(
    presignature: Presignature, digest: bytes, path: Iterable[int] = ()
) -> PartialSignature:
    """Issue this party's partial signature, consuming ``presignature``."""
    return presignature.sign(digest, path)


def combine(partials: Sequence[PartialSignature], digest: bytes, public_key: bytes) -> Signature:
    """Combine one partial signature per signer and verify under ``public_key``.

    ``public_key`` is the key signed for: the derived child key when a path was used.
    Raises ``InvalidSignatureError`` if the result does not verify (a bad partial).
    """
    d = _check_digest(digest)
    with core_errors():
        rs = _core.ecdsa_combine([p.raw for p in partials], public_key, d)
    return Signature.from_rs(bytes(rs), public_key, d)


def derive_public_key(xpub: ExtendedPublicKey, path: Iterable[int]) -> ExtendedPublicKey:
    """Non-hardened BIP32 child of ``xpub``."""
    return xpub.derive(path)


# ---------------------------------------------------------------------------
# Interactive protocols
# ---------------------------------------------------------------------------

Message = tuple[int | None, bytes]


class Session(ABC, Generic[_T]):
    """One party's run of an interactive protocol, driven by the caller's transport."""

    _MSG_KIND: ClassVar[str] = ""

    def __init__(self, core: _core.EcdsaSession) -> None:
        self._core = core

    @property
    def index(self) -> int:
        """This party's keygen index."""
        return self._core.index

    @property
    def parties(self) -> tuple[int, ...]:
        """Keygen indices of everyone taking part."""
        return tuple(self._core.parties)

    def outgoing(self) -> list[Message]:
        """Drain messages to send: ``(recipient keygen index, or None to broadcast, bytes)``."""
        tag = _PREFIX + self._MSG_KIND
        return [(r, encoding.wrap(tag, bytes(m))) for r, m in self._core.outgoing()]

    def receive(self, sender: int, broadcast: bool, message: bytes) -> None:
        """Feed one authenticated message. An undecodable message is dropped and raises
        ``ProtocolError`` naming ``sender``; an abort raises it naming whom the crate blames."""
        try:
            payload = encoding.unwrap(_PREFIX + self._MSG_KIND, message)
        except DecodeError as err:
            raise ProtocolError(f"bad message from party {sender}: {err}", (sender,)) from None
        with core_errors():
            self._core.receive(sender, broadcast, payload)

    @property
    def done(self) -> bool:
        return self._core.is_done()

    @property
    def output(self) -> _T:
        """The result; raises ``ProtocolError`` if the protocol aborted."""
        with core_errors():
            return self._convert(self._core.output())

    @abstractmethod
    def _convert(self, out: object) -> _T:
        """The crate's output as the typed result."""


def _as_bytes(out: object) -> bytes:
    if not isinstance(out, bytes):
        raise TypeError(f"core returned {type(out).__name__}, expected bytes")
    return out


class AuxInfoSession(Session[AuxInfo]):
    """Aux info generation for party ``index`` of ``n`` with its pregenerated primes."""

    _MSG_KIND = "aux_msg"

    def __init__(self, eid: bytes, index: int, n: int, primes: Primes) -> None:
        with core_errors():
            super().__init__(_core.ecdsa_aux_info_session(bytes(eid), index, n, primes.raw))

    def _convert(self, out: object) -> AuxInfo:
        return AuxInfo.from_raw(_as_bytes(out))


class KeygenSession(Session[IncompleteKeyShare]):
    """Threshold DKG: ``threshold``-of-``n``, HD-enabled."""

    _MSG_KIND = "keygen_msg"

    def __init__(self, eid: bytes, index: int, n: int, threshold: int) -> None:
        with core_errors():
            super().__init__(_core.ecdsa_keygen_session(bytes(eid), index, n, threshold))

    def _convert(self, out: object) -> IncompleteKeyShare:
        return IncompleteKeyShare.from_raw(_as_bytes(out))


class PresignSession(Session[Presignature]):
    """Presignature generation among ``signers`` (exactly t keygen indices)."""

    _MSG_KIND = "presign_msg"

    def __init__(self, eid: bytes, key_share: KeyShare, signers: Sequence[int]) -> None:
        with core_errors():
            super().__init__(_core.ecdsa_presign_session(bytes(eid), key_share.raw, list(signers)))

    def _convert(self, out: object) -> Presignature:
        if not isinstance(out, _core.EcdsaPresignature):
            raise TypeError("core returned no presignature")
        return Presignature(out)


class SignSession(Session[Signature]):
    """Interactive signing of a 32-byte digest, optionally for the child key at ``path``."""

    _MSG_KIND = "sign_msg"

    def __init__(
        self,
        eid: bytes,
        key_share: KeyShare,
        signers: Sequence[int],
        digest: bytes,
        path: Iterable[int] = (),
    ) -> None:
        d, p = _check_digest(digest), _check_path(path)
        self._digest = d
        self._public_key = key_share.derive_public_key(p) if p else key_share.public_key
        with core_errors():
            super().__init__(
                _core.ecdsa_sign_session(bytes(eid), key_share.raw, list(signers), d, p)
            )

    def _convert(self, out: object) -> Signature:
        return Signature.from_rs(_as_bytes(out), self._public_key, self._digest)


# ---------------------------------------------------------------------------
# In-process runs
# ---------------------------------------------------------------------------


def run_local(sessions: Sequence[Session[_T]]) -> list[_T]:
    """Route messages among in-process sessions until all finish; outputs in input order."""
    by_index = {s.index: s for s in sessions}
    if len(by_index) != len(sessions):
        raise InvalidParametersError("two sessions with the same index")
    queue: deque[tuple[int, int | None, bytes]] = deque()

    def collect() -> None:
        for s in sessions:
            queue.extend((s.index, r, m) for r, m in s.outgoing())

    collect()
    while queue:
        sender, recipient, msg = queue.popleft()
        targets = [i for i in by_index if i != sender] if recipient is None else [recipient]
        for j in targets:
            if j not in by_index:
                raise ProtocolError(f"party {sender} addressed unknown party {j}", (sender,))
            by_index[j].receive(sender, recipient is None, msg)
        collect()
    stalled = [s.index for s in sessions if not s.done]
    if stalled:
        raise ProtocolError(f"protocol stalled for parties {stalled}")
    return [s.output for s in sessions]


def local_aux_info(n: int, primes: Sequence[Primes], eid: bytes | None = None) -> list[AuxInfo]:
    """Aux info for ``n`` local parties; party ``i`` uses ``primes[i]`` (distinct per party)."""
    if len(primes) < n:
        raise InvalidParametersError(f"need {n} sets of primes, got {len(primes)}")
    e = eid or _new_eid()
    return run_local([AuxInfoSession(e, i, n, primes[i]) for i in range(n)])


def local_incomplete_keygen(t: int, n: int, eid: bytes | None = None) -> list[IncompleteKeyShare]:
    """Threshold DKG among ``n`` local parties."""
    e = eid or _new_eid()
    return run_local([KeygenSession(e, i, n, t) for i in range(n)])


def local_keygen(
    t: int, n: int, aux_infos: Sequence[AuxInfo], eid: bytes | None = None
) -> list[KeyShare]:
    """Threshold DKG among ``n`` local parties, completed with their aux info."""
    if len(aux_infos) != n:
        raise InvalidParametersError(f"need aux info of all {n} parties")
    shares = local_incomplete_keygen(t, n, eid)
    return [KeyShare.from_parts(s, a) for s, a in zip(shares, aux_infos, strict=True)]


def _signer_shares(key_shares: Sequence[KeyShare], signers: Sequence[int]) -> list[KeyShare]:
    by_index = {k.index: k for k in key_shares}
    missing = [i for i in signers if i not in by_index]
    if missing:
        raise InvalidParametersError(f"no key share for signers {missing}")
    return [by_index[i] for i in signers]


def local_presign(
    key_shares: Sequence[KeyShare], signers: Sequence[int], eid: bytes | None = None
) -> list[Presignature]:
    """Presignatures for ``signers`` (keygen indices), in ``signers`` order."""
    e = eid or _new_eid()
    shares = _signer_shares(key_shares, signers)
    return run_local([PresignSession(e, k, signers) for k in shares])


def local_sign(
    key_shares: Sequence[KeyShare],
    signers: Sequence[int],
    digest: bytes,
    path: Iterable[int] = (),
    eid: bytes | None = None,
) -> Signature:
    """Interactive signing by ``signers``; every party must output the same signature."""
    e = eid or _new_eid()
    p = list(path)
    shares = _signer_shares(key_shares, signers)
    sigs = run_local([SignSession(e, k, signers, digest, p) for k in shares])
    if any(s != sigs[0] for s in sigs):
        raise ProtocolError("signers disagree on the signature")
    return sigs[0]
