"""FROST threshold Schnorr signatures over the ZF `frost-*` crates.

Two ciphersuites: ``SECP256K1_TR`` (BIP340 signatures, BIP341 Taproot tweaks;
Bitcoin P2TR and EVM custody contracts) and ``ED25519`` (RFC 8032; Solana).

Every object is an immutable value holding the crate's own serialization;
``to_bytes()`` adds a versioned synod header and ``from_bytes()`` checks it and
asks the crate to parse the payload, so malformed input fails at the edge.
The objects signing and the DKG use (key and public key packages, nonces,
commitments, signing packages, shares, signatures, DKG packages) also keep the
crate's parsed object, made when the crate returns or parses them, and pass it
back to the core instead of their bytes: each is decoded once per process, not
once per call, and an object the core made is serialized only when its bytes
are needed.

The steps follow the crates: DKG part 1/2/3; signing round 1 (``commit``),
signing package, round 2 (``sign``), ``aggregate`` (naming every cheater),
``verify``; proactive ``refresh_*``; ``repair_*`` of a lost share from t
helpers; and ``reshare_*`` to a new committee and threshold with the same group
key (the one protocol built here, on the crate's public types).

Secret objects (nonces, secret packages, key packages) never appear in a repr.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

from synod import _core
from synod.crypto import encoding
from synod.crypto.errors import (
    DecodeError,
    InvalidParametersError,
    InvalidSignatureError,
    core_errors,
)

MAX_PARTICIPANTS = 65535
#: Longest message a signer accepts in a signing package (a Solana transaction message is at
#: most 1,232 bytes; Bitcoin and EVM sign 32-byte digests).
MAX_SIGNING_MESSAGE = 64 * 1024


class Ciphersuite(enum.Enum):
    """A FROST ciphersuite; the value is the name the core understands."""

    SECP256K1_TR = "secp256k1-tr"
    ED25519 = "ed25519"

    @classmethod
    def parse(cls, name: str) -> Ciphersuite:
        aliases = {"bip340": cls.SECP256K1_TR, "taproot": cls.SECP256K1_TR}
        try:
            return aliases.get(name) or cls(name)
        except ValueError:
            raise InvalidParametersError(f"unknown FROST ciphersuite {name!r}") from None


@dataclass(frozen=True)
class TaprootTweak:
    """BIP341 tweak of the group key: key-path only, or committing to a script tree."""

    merkle_root: bytes | None = None

    def __post_init__(self) -> None:
        if self.merkle_root is not None and len(self.merkle_root) != 32:
            raise InvalidParametersError("a Taproot merkle root is 32 bytes")


KEY_PATH = TaprootTweak()

#: Serialized group element length per ciphersuite (SEC1 compressed; Ed25519).
_ELEMENT_LEN = {Ciphersuite.SECP256K1_TR: 33, Ciphersuite.ED25519: 32}
#: Crate serializations of a fixed length, checked before any copy or parse of peer bytes.
_FIXED_LEN: dict[str, Callable[[int], int]] = {
    "signing_commitments": lambda e: 5 + 2 * e,  # header and two points
    "signature_share": lambda e: 32,
    "signature": lambda e: 64,
}

_T = TypeVar("_T", bound="FrostObject")


class FrostObject:
    """A FROST object of one ciphersuite: the crate's serialization (`raw`) and, for the
    kinds signing uses, the crate's parsed object. An object the core made is held parsed
    and serialized on first use of `raw`; bytes from a peer or from storage are parsed on
    first use (`from_raw` parses at once). Immutable; equal when kind, suite and bytes are.
    """

    KIND: ClassVar[str] = ""
    #: Whether the core keeps a parsed form of this kind (`_core.frost_parse`).
    PARSED: ClassVar[bool] = False

    suite: Ciphersuite
    _raw: bytes | None
    _parsed: _core.FrostParsed | None

    def __init__(
        self,
        suite: Ciphersuite,
        raw: bytes | None = None,
        parsed: _core.FrostParsed | None = None,
    ) -> None:
        if raw is None and parsed is None:
            raise InvalidParametersError(f"a {self.KIND} needs its bytes or its parsed form")
        object.__setattr__(self, "suite", suite)
        object.__setattr__(self, "_raw", None if raw is None else bytes(raw))
        object.__setattr__(self, "_parsed", parsed)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __repr__(self) -> str:  # never the bytes: several kinds are secret
        return f"{type(self).__name__}(suite={self.suite!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, FrostObject)
        return self.suite is other.suite and self.raw == other.raw

    def __hash__(self) -> int:
        return hash((type(self), self.suite, self.raw))

    @property
    def raw(self) -> bytes:
        """The crate's serialization."""
        raw = self._raw
        if raw is None:
            parsed = self._parsed
            assert parsed is not None  # the constructor takes bytes, a parsed form, or both
            with core_errors():
                raw = _core.frost_serialize(self.suite.value, parsed)
            object.__setattr__(self, "_raw", raw)
        return raw

    def _tag(self) -> str:
        return f"frost:{self.suite.value}:{self.KIND}"

    def to_bytes(self) -> bytes:
        return encoding.wrap(self._tag(), self.raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        tag = encoding.kind_of(data)
        parts = tag.split(":")
        if len(parts) != 3 or parts[0] != "frost" or parts[2] != cls.KIND:
            raise DecodeError(f"expected a FROST {cls.KIND}, got {tag!r}")
        try:
            suite = Ciphersuite(parts[1])
        except ValueError:
            raise DecodeError(f"unknown ciphersuite in {tag!r}") from None
        fixed = _FIXED_LEN.get(cls.KIND)
        if fixed is not None and len(data) != _header_len(tag) + fixed(_ELEMENT_LEN[suite]):
            raise DecodeError(f"a {cls.KIND} has {fixed(_ELEMENT_LEN[suite])} bytes")
        return cls.from_raw(suite, encoding.unwrap(tag, data))

    @classmethod
    def from_raw(cls, suite: Ciphersuite, raw: bytes) -> Self:
        """Wrap a crate serialization after the crate has parsed it."""
        obj = cls(suite, bytes(raw))
        obj._validate()
        return obj

    def _validate(self) -> None:
        if self.PARSED:
            self._handle()
            return
        with core_errors():
            _core.frost_check(self.suite.value, self.KIND, self.raw)

    def _handle(self) -> _core.FrostParsed:
        """The parsed object, parsing the bytes on first use (a DecodeError if they are bad)."""
        parsed = self._parsed
        if parsed is None:
            with core_errors():
                parsed = _core.frost_parse(self.suite.value, self.KIND, self.raw)
            object.__setattr__(self, "_parsed", parsed)
        return parsed

    @classmethod
    def _made(cls, suite: Ciphersuite, parsed: _core.FrostParsed) -> Self:
        """An object the core has just made, held parsed."""
        return cls(suite, None, parsed)


class DkgRound1Secret(FrostObject):
    KIND = "dkg_round1_secret"


class DkgRound1Package(FrostObject):
    KIND = "dkg_round1_package"
    PARSED = True


class DkgRound2Secret(FrostObject):
    KIND = "dkg_round2_secret"


class DkgRound2Package(FrostObject):
    KIND = "dkg_round2_package"
    PARSED = True


class KeyPackage(FrostObject):
    """A signer's long-lived secret share with its public context."""

    KIND = "key_package"
    PARSED = True

    @property
    def identifier(self) -> int:
        return self._info[0]

    @property
    def min_signers(self) -> int:
        return self._info[1]

    @property
    def verifying_share(self) -> bytes:
        return self._info[2]

    @property
    def verifying_key(self) -> bytes:
        return self._info[3]

    @functools.cached_property
    def _info(self) -> tuple[int, int, bytes, bytes]:
        with core_errors():
            return _core.frost_key_package_info(self.suite.value, self._handle())


class PublicKeyPackage(FrostObject):
    """The group's public data: group key, every verifying share, the threshold."""

    KIND = "public_key_package"
    PARSED = True

    @functools.cached_property
    def _info(self) -> tuple[int | None, dict[int, bytes], bytes]:
        with core_errors():
            return _core.frost_public_package_info(self.suite.value, self._handle())

    @property
    def min_signers(self) -> int:
        t = self._info[0]
        if t is None:
            raise InvalidParametersError("public key package has no threshold (pre-3.0 format)")
        return t

    @property
    def identifiers(self) -> tuple[int, ...]:
        return tuple(sorted(self._info[1]))

    @property
    def verifying_shares(self) -> dict[int, bytes]:
        return dict(self._info[1])

    def verifying_key(self, tweak: TaprootTweak | None = None) -> bytes:
        """The crate's serialization of the group key (33-byte SEC1 or 32-byte Ed25519)."""
        with core_errors():
            return _core.frost_verifying_key(self.suite.value, self._handle(), *_tweak_args(tweak))

    def group_public_key(self, tweak: TaprootTweak | None = None) -> bytes:
        """The key a verifier uses: x-only (32 bytes) for BIP340, 32 bytes for Ed25519."""
        vk = self.verifying_key(tweak)
        return vk[1:] if self.suite is Ciphersuite.SECP256K1_TR else vk

    def verify(
        self, message: bytes, signature: Signature, tweak: TaprootTweak | None = None
    ) -> None:
        """Verify under the (tweaked) group key with the crate, from the parsed objects.

        Raises `InvalidSignatureError`; for a key given as bytes use the module's `verify`.
        """
        _same_suite([self, signature])
        with core_errors():
            _core.frost_verify_parsed(
                self.suite.value,
                self._handle(),
                bytes(message),
                signature._handle(),
                *_tweak_args(tweak),
            )


class SigningNonces(FrostObject):
    """Secret one-time nonces. Reusing them leaks the key share: persist, then use once."""

    KIND = "signing_nonces"
    PARSED = True


class SigningCommitments(FrostObject):
    KIND = "signing_commitments"
    PARSED = True

    @classmethod
    def from_points(cls, suite: Ciphersuite, hiding: bytes, binding: bytes) -> SigningCommitments:
        """Build from the two serialized nonce commitment points (e.g. published vectors)."""
        with core_errors():
            return cls(
                suite, _core.frost_raw_commitments(suite.value, bytes(hiding), bytes(binding))
            )


class SigningPackage(FrostObject):
    """The commitments of the chosen signers and the message, as the coordinator sends it."""

    KIND = "signing_package"
    PARSED = True

    @functools.cached_property
    def _info(self) -> tuple[bytes, tuple[int, ...]]:
        with core_errors():
            message, signers = _core.frost_signing_package_info(self.suite.value, self._handle())
        return message, tuple(signers)

    @property
    def message(self) -> bytes:
        return self._info[0]

    @property
    def signers(self) -> tuple[int, ...]:
        return self._info[1]

    def commitment(self, identifier: int) -> SigningCommitments | None:
        """One signer's commitments, or None if it is not in the package."""
        with core_errors():
            parsed = _core.frost_signing_package_commitment(
                self.suite.value, self._handle(), check_identifier(identifier)
            )
        return None if parsed is None else SigningCommitments._made(self.suite, parsed)

    def commitments(self) -> dict[int, SigningCommitments]:
        return {i: c for i in self.signers if (c := self.commitment(i)) is not None}


class SignatureShare(FrostObject):
    KIND = "signature_share"
    PARSED = True

    @classmethod
    def from_scalar(cls, suite: Ciphersuite, scalar: bytes) -> SignatureShare:
        """Build from a serialized share scalar (e.g. published vectors)."""
        with core_errors():
            return cls(suite, _core.frost_raw_share(suite.value, bytes(scalar)))


class Signature(FrostObject):
    """A 64-byte Schnorr signature (BIP340 or RFC 8032)."""

    KIND = "signature"
    PARSED = True


class RepairDelta(FrostObject):
    KIND = "repair_delta"


class RepairSigma(FrostObject):
    KIND = "repair_sigma"


class ReshareCommitment(FrostObject):
    """Feldman commitment to an old signer's sub-sharing polynomial (broadcast)."""

    KIND = "reshare_commitment"


class ReshareShare(FrostObject):
    """An old signer's sub-share for one new signer (sent privately)."""

    KIND = "reshare_share"


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _same_suite(objs: Iterable[FrostObject]) -> Ciphersuite:
    suites = {o.suite for o in objs}
    if not suites:
        raise InvalidParametersError("no FROST objects given")
    if len(suites) != 1:
        raise InvalidParametersError(
            f"objects from different ciphersuites: {sorted(s.value for s in suites)}"
        )
    return suites.pop()


def check_identifier(identifier: object) -> int:
    """A participant identifier as the core takes it (1..65535), or `InvalidParametersError`."""
    if isinstance(identifier, bool) or not isinstance(identifier, int):
        raise InvalidParametersError(f"an identifier is an int, got {type(identifier).__name__}")
    if not 1 <= identifier <= MAX_PARTICIPANTS:
        raise InvalidParametersError(f"identifier {identifier} outside 1..{MAX_PARTICIPANTS}")
    return int(identifier)


def _ids(identifiers: Iterable[object]) -> list[int]:
    return sorted({check_identifier(i) for i in identifiers})


def _raw_map(m: Mapping[int, FrostObject]) -> dict[int, bytes]:
    return {check_identifier(k): v.raw for k, v in m.items()}


def _handle_map(m: Mapping[int, FrostObject]) -> dict[int, _core.FrostParsed]:
    return {check_identifier(k): v._handle() for k, v in m.items()}


def _wrap_map(cls: type[_T], suite: Ciphersuite, m: Mapping[int, bytes]) -> dict[int, _T]:
    return {int(k): cls(suite, bytes(v)) for k, v in m.items()}


def _tweak_args(tweak: TaprootTweak | None) -> tuple[bool, bytes | None]:
    if tweak is None:
        return False, None
    return True, tweak.merkle_root


def _check_threshold(min_signers: int, max_signers: int) -> None:
    if not 2 <= min_signers <= max_signers <= MAX_PARTICIPANTS:
        raise InvalidParametersError(
            f"need 2 <= threshold <= parties <= {MAX_PARTICIPANTS}, "
            f"got threshold={min_signers}, parties={max_signers}"
        )


# ---------------------------------------------------------------------------
# DKG
# ---------------------------------------------------------------------------


def dkg_part1(
    suite: Ciphersuite, identifier: int, max_signers: int, min_signers: int
) -> tuple[DkgRound1Secret, DkgRound1Package]:
    """Start the DKG: keep the secret, broadcast the package (commitment + proof of knowledge)."""
    return _round1(suite, identifier, max_signers, min_signers, refresh=False)


def _round1(
    suite: Ciphersuite, identifier: int, max_signers: int, min_signers: int, refresh: bool
) -> tuple[DkgRound1Secret, DkgRound1Package]:
    """Round 1 of a DKG or of a refresh (the crate's steps have the same shape)."""
    _check_threshold(min_signers, max_signers)
    ident = check_identifier(identifier)
    with core_errors():
        s, p = _core.frost_dkg_part1(suite.value, refresh, ident, max_signers, min_signers)
    return DkgRound1Secret(suite, s), DkgRound1Package(suite, p)


def dkg_part2(
    secret: DkgRound1Secret, round1: Mapping[int, DkgRound1Package]
) -> tuple[DkgRound2Secret, dict[int, DkgRound2Package]]:
    """Check everyone's proof of knowledge; returns one private package per other participant."""
    return _round2(secret, round1, refresh=False)


def _round2(
    secret: DkgRound1Secret, round1: Mapping[int, DkgRound1Package], refresh: bool
) -> tuple[DkgRound2Secret, dict[int, DkgRound2Package]]:
    suite = _same_suite([secret, *round1.values()])
    with core_errors():
        s, out = _core.frost_dkg_part2(suite.value, refresh, secret.raw, _handle_map(round1))
    return DkgRound2Secret(suite, s), _wrap_map(DkgRound2Package, suite, out)


def dkg_part3(
    secret: DkgRound2Secret,
    round1: Mapping[int, DkgRound1Package],
    round2: Mapping[int, DkgRound2Package],
    *,
    crate_checks: bool = False,
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Check the private shares against their commitments and derive the long-lived key.

    The core evaluates each commitment by Horner's rule at the small identifiers (the same
    checks and result as the crate's ``dkg::part3``, which ``crate_checks`` runs instead).
    """
    suite = _same_suite([secret, *round1.values(), *round2.values()])
    with core_errors():
        k, p = _core.frost_dkg_part3(
            suite.value,
            secret.raw,
            _handle_map(round1),
            _handle_map(round2),
            crate_checks,
        )
    return KeyPackage(suite, k), PublicKeyPackage(suite, p)


# ---------------------------------------------------------------------------
# signing
# ---------------------------------------------------------------------------


def commit(key_package: KeyPackage) -> tuple[SigningNonces, SigningCommitments]:
    """Round 1: fresh nonces (keep secret, use once) and their public commitments."""
    suite = key_package.suite
    with core_errors():
        n, c = _core.frost_round1(suite.value, key_package._handle())
    return SigningNonces._made(suite, n), SigningCommitments._made(suite, c)


def signing_package(
    commitments: Mapping[int, SigningCommitments], message: bytes
) -> SigningPackage:
    """What the coordinator sends to the chosen signers: their commitments and the message."""
    suite = _same_suite(commitments.values())
    with core_errors():
        made = _core.frost_signing_package(suite.value, _handle_map(commitments), bytes(message))
    return SigningPackage._made(suite, made)


def receive_signing_package(
    data: bytes,
    key_package: KeyPackage,
    committee: Iterable[int],
    max_message: int = MAX_SIGNING_MESSAGE,
) -> SigningPackage:
    """Parse a signing package a coordinator sent to this signer, at bounded cost.

    The shape is checked first, in time linear in the committee and without decoding a
    point: at most one commitment per committee member and at least the threshold, every
    identifier a member's, this signer's own commitment present, a message of at most
    `max_message` bytes. Only then does the crate parse it. Raises `DecodeError`.
    """
    tag = encoding.kind_of(data)
    expected = f"frost:{key_package.suite.value}:{SigningPackage.KIND}"
    if tag != expected:
        raise DecodeError(f"expected {expected!r}, got {tag!r}")
    members = _ids(committee)
    e, k = _ELEMENT_LEN[key_package.suite], len(members)
    longest = 5 + _varint_len(k) + k * (32 + 5 + 2 * e) + _varint_len(max_message) + max_message
    if len(data) > _header_len(tag) + longest:
        raise DecodeError(f"signing package of {len(data)} bytes for a committee of {k}")
    raw = encoding.unwrap(tag, data)
    with core_errors():
        parsed = _core.frost_check_signing_package(
            key_package.suite.value,
            raw,
            key_package.identifier,
            key_package.min_signers,
            members,
            max_message,
        )
    return SigningPackage(key_package.suite, raw, parsed)


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def _header_len(tag: str) -> int:
    return 4 + len(tag.encode("ascii"))


def _receive_exact(cls: type[_T], data: bytes, suite: Ciphersuite, length: int) -> _T:
    """Parse a peer's object whose length the threshold fixes, checking it first."""
    tag = encoding.kind_of(data)
    expected = f"frost:{suite.value}:{cls.KIND}"
    if tag != expected:
        raise DecodeError(f"expected {expected!r}, got {tag!r}")
    if len(data) != _header_len(tag) + length:
        raise DecodeError(f"{cls.KIND}: {len(data) - _header_len(tag)} bytes, expected {length}")
    return cls.from_raw(suite, encoding.unwrap(tag, data))


def receive_dkg_round1_package(
    data: bytes, suite: Ciphersuite, min_signers: int
) -> DkgRound1Package:
    """A peer's round-1 package, its length checked against the threshold before the crate
    decodes its t commitment points and proof (a hostile package of 16 MiB would otherwise
    cost seconds)."""
    e = _ELEMENT_LEN[suite]
    # header, count, t points, 64-byte proof of knowledge with its length byte
    length = 5 + _varint_len(min_signers) + min_signers * e + 1 + 64
    return _receive_exact(DkgRound1Package, data, suite, length)


def receive_reshare_commitment(
    data: bytes, suite: Ciphersuite, new_min_signers: int
) -> ReshareCommitment:
    """An old signer's reshare commitment: exactly `new_min_signers` points, checked first."""
    return _receive_exact(ReshareCommitment, data, suite, new_min_signers * _ELEMENT_LEN[suite])


def sign(
    package: SigningPackage,
    nonces: SigningNonces,
    key_package: KeyPackage,
    tweak: TaprootTweak | None = None,
) -> SignatureShare:
    """Round 2: this signer's share of the signature."""
    suite = _same_suite([package, nonces, key_package])
    with core_errors():
        made = _core.frost_round2(
            suite.value,
            package._handle(),
            nonces._handle(),
            key_package._handle(),
            *_tweak_args(tweak),
        )
    return SignatureShare._made(suite, made)


def aggregate(
    package: SigningPackage,
    shares: Mapping[int, SignatureShare],
    public_key_package: PublicKeyPackage,
    tweak: TaprootTweak | None = None,
) -> Signature:
    """Combine the shares; on failure `InvalidShareError.culprits` names every cheater."""
    suite = _same_suite([package, public_key_package, *shares.values()])
    with core_errors():
        made = _core.frost_aggregate(
            suite.value,
            package._handle(),
            _handle_map(shares),
            public_key_package._handle(),
            *_tweak_args(tweak),
        )
    return Signature._made(suite, made)


def verify_share(
    identifier: int,
    package: SigningPackage,
    share: SignatureShare,
    public_key_package: PublicKeyPackage,
    tweak: TaprootTweak | None = None,
) -> None:
    """Check one signer's share on arrival; `InvalidShareError` names the signer."""
    suite = _same_suite([package, share, public_key_package])
    ident = check_identifier(identifier)
    with core_errors():
        _core.frost_verify_share(
            suite.value,
            ident,
            package._handle(),
            share._handle(),
            public_key_package._handle(),
            *_tweak_args(tweak),
        )


class ShareVerifier:
    """Checks the shares of one signing package, computing binding factors, group
    commitment and challenge once instead of once per share (a coordinator with t
    signers saves O(t²) point multiplications per sub-session)."""

    def __init__(
        self,
        package: SigningPackage,
        public_key_package: PublicKeyPackage,
        tweak: TaprootTweak | None = None,
    ) -> None:
        self.suite = _same_suite([package, public_key_package])
        with core_errors():
            self._inner = _core.FrostShareVerifier(
                self.suite.value,
                package._handle(),
                public_key_package._handle(),
                *_tweak_args(tweak),
            )

    def verify(self, identifier: int, share: SignatureShare) -> None:
        """`InvalidShareError` naming `identifier` unless its share is valid."""
        if share.suite is not self.suite:
            raise InvalidParametersError("share of another ciphersuite")
        ident = check_identifier(identifier)
        with core_errors():
            self._inner.verify(ident, share._handle())


def verify(
    suite: Ciphersuite, public_key: bytes, message: bytes, signature: bytes | Signature
) -> None:
    """Verify with the crate (BIP340 with an x-only or SEC1 key; RFC 8032 for Ed25519).

    Raises `InvalidSignatureError` on a bad signature, `DecodeError` on a malformed key.
    """
    sig = signature.raw if isinstance(signature, Signature) else bytes(signature)
    key = bytes(public_key)
    if suite is Ciphersuite.SECP256K1_TR and len(key) == 32:
        key = b"\x02" + key  # BIP340 lifts an x-only key to the point with even y
    if len(sig) != 64:
        raise InvalidSignatureError(f"a signature is 64 bytes, got {len(sig)}")
    with core_errors():
        _core.frost_verify(suite.value, key, bytes(message), sig)


# ---------------------------------------------------------------------------
# proactive refresh (same key, same threshold, new shares)
# ---------------------------------------------------------------------------


def refresh_part1(
    suite: Ciphersuite, identifier: int, max_signers: int, min_signers: int
) -> tuple[DkgRound1Secret, DkgRound1Package]:
    """Start a refresh: a DKG of a zero secret, added to the current shares at the end."""
    return _round1(suite, identifier, max_signers, min_signers, refresh=True)


def refresh_part2(
    secret: DkgRound1Secret, round1: Mapping[int, DkgRound1Package]
) -> tuple[DkgRound2Secret, dict[int, DkgRound2Package]]:
    return _round2(secret, round1, refresh=True)


def refresh_part3(
    secret: DkgRound2Secret,
    round1: Mapping[int, DkgRound1Package],
    round2: Mapping[int, DkgRound2Package],
    public_key_package: PublicKeyPackage,
    key_package: KeyPackage,
) -> tuple[KeyPackage, PublicKeyPackage]:
    """Finish the refresh; the group key is checked to be unchanged."""
    suite = _same_suite([secret, public_key_package, key_package])
    with core_errors():
        k, p = _core.frost_refresh_part3(
            suite.value,
            secret.raw,
            _handle_map(round1),
            _handle_map(round2),
            public_key_package.raw,
            key_package.raw,
        )
    return KeyPackage(suite, k), PublicKeyPackage(suite, p)


# ---------------------------------------------------------------------------
# repair of a lost share (RTS: t helpers, nobody learns the share but its owner)
# ---------------------------------------------------------------------------


def repair_part1(
    helpers: Iterable[int], key_package: KeyPackage, participant: int
) -> dict[int, RepairDelta]:
    """A helper's deltas, one per helper (including itself)."""
    with core_errors():
        out = _core.frost_repair_part1(
            key_package.suite.value,
            sorted(check_identifier(h) for h in helpers),
            key_package.raw,
            check_identifier(participant),
        )
    return _wrap_map(RepairDelta, key_package.suite, out)


def repair_part2(deltas: Mapping[int, RepairDelta]) -> RepairSigma:
    """A helper sums the deltas it received (keyed by sender) into one sigma for the participant."""
    suite = _same_suite(deltas.values())
    with core_errors():
        return RepairSigma(suite, _core.frost_repair_part2(suite.value, _raw_map(deltas)))


def repair_part3(
    sigmas: Mapping[int, RepairSigma], participant: int, public_key_package: PublicKeyPackage
) -> KeyPackage:
    """The participant rebuilds its share and checks it against its verifying share."""
    suite = _same_suite([public_key_package, *sigmas.values()])
    with core_errors():
        raw = _core.frost_repair_part3(
            suite.value, _raw_map(sigmas), check_identifier(participant), public_key_package.raw
        )
    return KeyPackage(suite, raw)


# ---------------------------------------------------------------------------
# resharing to a new committee and threshold (same group key)
# ---------------------------------------------------------------------------


def reshare_part1(
    key_package: KeyPackage,
    old_signers: Iterable[int],
    new_identifiers: Iterable[int],
    new_min_signers: int,
) -> tuple[ReshareCommitment, dict[int, ReshareShare]]:
    """An old signer sub-shares its Lagrange-weighted share to the new committee.

    `old_signers` is the agreed set (at least the old threshold) taking part; the
    commitment goes to every new signer, each share privately to its owner.
    """
    new_ids = _ids(new_identifiers)
    _check_threshold(new_min_signers, len(new_ids))
    with core_errors():
        c, out = _core.frost_reshare_part1(
            key_package.suite.value,
            key_package.raw,
            _ids(old_signers),
            new_ids,
            new_min_signers,
        )
    return ReshareCommitment(key_package.suite, c), _wrap_map(ReshareShare, key_package.suite, out)


def reshare_part2(
    identifier: int,
    new_identifiers: Iterable[int],
    new_min_signers: int,
    old_public_key_package: PublicKeyPackage,
    commitments: Mapping[int, ReshareCommitment],
    shares: Mapping[int, ReshareShare],
) -> tuple[KeyPackage, PublicKeyPackage]:
    """A new signer checks every old signer's contribution and derives its share.

    Raises `InvalidPackageError` naming every old signer whose commitment does
    not match its old verifying share or whose sub-share does not match its
    commitment. The result has the old group key and the new threshold.
    """
    suite = _same_suite([old_public_key_package, *commitments.values(), *shares.values()])
    new_ids = _ids(new_identifiers)
    _check_threshold(new_min_signers, len(new_ids))
    ident = check_identifier(identifier)
    with core_errors():
        k, p = _core.frost_reshare_part2(
            suite.value,
            ident,
            new_ids,
            new_min_signers,
            old_public_key_package.raw,
            _raw_map(commitments),
            _raw_map(shares),
        )
    return KeyPackage(suite, k), PublicKeyPackage(suite, p)


# ---------------------------------------------------------------------------
# in-process ceremonies (tests, benchmarks, the keygen command); no network
# ---------------------------------------------------------------------------


def local_dkg(
    suite: Ciphersuite, min_signers: int, max_signers: int
) -> tuple[dict[int, KeyPackage], PublicKeyPackage]:
    """Run the DKG among identifiers 1..max_signers in this process, routing packages directly."""
    _check_threshold(min_signers, max_signers)
    ids = range(1, max_signers + 1)
    r1 = {i: dkg_part1(suite, i, max_signers, min_signers) for i in ids}
    r2 = {}
    for i in ids:
        others = {j: r1[j][1] for j in ids if j != i}
        r2[i] = dkg_part2(r1[i][0], others)
    keys: dict[int, KeyPackage] = {}
    public: PublicKeyPackage | None = None
    for i in ids:
        others1 = {j: r1[j][1] for j in ids if j != i}
        received = {j: r2[j][1][i] for j in ids if j != i}
        keys[i], pkp = dkg_part3(r2[i][0], others1, received)
        if public is None:
            public = pkp
        elif pkp.raw != public.raw:
            raise InvalidParametersError("participants derived different public key packages")
    assert public is not None
    return keys, public


def local_sign(
    key_packages: Mapping[int, KeyPackage],
    public_key_package: PublicKeyPackage,
    message: bytes,
    signers: Iterable[int],
    tweak: TaprootTweak | None = None,
) -> Signature:
    """Sign `message` with the given signers in this process (round 1, round 2, aggregate)."""
    chosen = sorted(set(signers))
    round1 = {i: commit(key_packages[i]) for i in chosen}
    package = signing_package({i: c for i, (_, c) in round1.items()}, message)
    shares = {i: sign(package, round1[i][0], key_packages[i], tweak) for i in chosen}
    return aggregate(package, shares, public_key_package, tweak)
