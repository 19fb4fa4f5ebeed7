"""Versioned byte encoding for every object that crosses the core boundary.

Layout: ``b"SY" | version (1 byte) | kind length (1 byte) | kind (ascii) | payload``.
The payload is whatever the audited crate's own serializer produced; the
header lets a reader refuse bytes of the wrong kind or an unknown version
before handing them to the crate.
"""

from __future__ import annotations

from synod.crypto.errors import DecodeError

MAGIC = b"SY"
VERSION = 1


def wrap(kind: str, payload: bytes) -> bytes:
    """Prefix a crate serialization with the synod header for `kind`."""
    tag = kind.encode("ascii")
    if not 0 < len(tag) < 256:
        raise ValueError(f"bad kind tag {kind!r}")
    return MAGIC + bytes([VERSION, len(tag)]) + tag + payload


def kind_of(data: bytes) -> str:
    """The kind tag of an encoded object, checking magic and version."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 or data[:2] != MAGIC:
        raise DecodeError("not a synod encoding (bad magic)")
    if data[2] != VERSION:
        raise DecodeError(f"unsupported encoding version {data[2]}")
    tag = data[4 : 4 + data[3]]
    if len(tag) != data[3]:
        raise DecodeError("truncated kind tag")
    return tag.decode("ascii", "replace")


def unwrap(kind: str, data: bytes) -> bytes:
    """Check the header of `data` and return the payload; raise `DecodeError` otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"{kind}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4 or data[:2] != MAGIC:
        raise DecodeError(f"{kind}: not a synod encoding (bad magic)")
    if data[2] != VERSION:
        raise DecodeError(f"{kind}: unsupported encoding version {data[2]}")
    n = data[3]
    tag = data[4 : 4 + n]
    if tag != kind.encode("ascii"):
        raise DecodeError(f"expected {kind}, got {tag.decode('ascii', 'replace')}")
    return data[4 + n :]
