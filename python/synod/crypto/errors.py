"""Typed errors of the crypto core.

Every error that can be pinned on a participant carries the identifiers of
the culprits, so the protocol layer can exclude them and the audit trail can
name them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from synod import _core

T = TypeVar("T")


class CryptoError(Exception):
    """Base class of every error raised by `synod.crypto`."""

    def __init__(self, message: str, culprits: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.culprits = tuple(sorted(culprits))

    def __str__(self) -> str:
        if self.culprits:
            return f"{self.message} (culprits: {', '.join(map(str, self.culprits))})"
        return self.message


class DecodeError(CryptoError):
    """Bytes that are not a valid serialization of the expected object."""


class InvalidPackageError(CryptoError):
    """A DKG, refresh, repair or reshare package failed verification."""


class InvalidShareError(CryptoError):
    """One or more signature shares failed verification."""


class InvalidSignatureError(CryptoError):
    """A signature does not verify under the given key and message."""


class InvalidParametersError(CryptoError):
    """Thresholds, identifiers or participant sets that make no sense."""


class PresignatureUsedError(CryptoError):
    """A CGGMP presignature was asked to sign a second time."""


class ProtocolError(CryptoError):
    """An interactive protocol aborted (possibly naming the misbehaving party)."""


class InternalError(CryptoError):
    """A bug inside the core (a caught panic); the operation had no effect worth keeping."""


_KINDS: dict[str, type[CryptoError]] = {
    "decode": DecodeError,
    "invalid_package": InvalidPackageError,
    "invalid_share": InvalidShareError,
    "invalid_signature": InvalidSignatureError,
    "invalid_parameters": InvalidParametersError,
    "presignature_used": PresignatureUsedError,
    "protocol": ProtocolError,
    "internal": InternalError,
}


def from_core(err: BaseException) -> CryptoError:
    """Turn a `CoreError((kind, culprits, message))` raised in Rust into its typed class."""
    kind, culprits, message = err.args[0] if len(err.args) == 1 else err.args
    cls = _KINDS.get(kind, CryptoError)
    return cls(str(message), tuple(int(c) for c in culprits))


@contextmanager
def core_errors() -> Iterator[None]:
    """Re-raise errors from the Rust core (and ints it cannot take) as typed `CryptoError`s."""
    try:
        yield
    except _core.CoreError as err:
        raise from_core(err) from None
    except OverflowError:  # an identifier or count outside the core's integer type (u16, ...)
        raise InvalidParametersError("integer argument out of range") from None


def call_core(fn: Callable[..., T], *args: object) -> T:
    """Call a core function, translating its errors."""
    with core_errors():
        return fn(*args)
