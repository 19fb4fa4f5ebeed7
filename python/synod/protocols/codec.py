"""A tiny length-prefixed binary codec for protocol payloads.

Payloads are tuples of byte strings and unsigned integers. Anything that does
not decode to exactly the expected shape raises `CodecError`, which sessions
treat as a malformed message from its sender.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

Field = bytes | int


class CodecError(ValueError):
    """Payload bytes that do not have the expected shape."""


def pack(*fields: Field) -> bytes:
    out = bytearray(struct.pack(">H", len(fields)))
    for f in fields:
        if isinstance(f, int):
            if f < 0:
                raise ValueError("only unsigned integers")
            out += b"i" + struct.pack(">Q", f)
        else:
            out += b"b" + struct.pack(">I", len(f)) + f
    return bytes(out)


def unpack(data: bytes, shape: str) -> list[Field]:
    """Decode `data`; `shape` is one letter per field: 'b' bytes, 'i' integer."""
    try:
        (count,) = struct.unpack_from(">H", data, 0)
        if count != len(shape):
            raise CodecError(f"expected {len(shape)} fields, got {count}")
        off = 2
        out: list[Field] = []
        for want in shape:
            tag = data[off : off + 1]
            off += 1
            if tag != want.encode():
                raise CodecError(f"field type {tag!r}, expected {want!r}")
            if want == "i":
                (v,) = struct.unpack_from(">Q", data, off)
                off += 8
                out.append(v)
            else:
                (n,) = struct.unpack_from(">I", data, off)
                off += 4
                if off + n > len(data):
                    raise CodecError("truncated field")
                out.append(bytes(data[off : off + n]))
                off += n
        if off != len(data):
            raise CodecError("trailing bytes")
        return out
    except struct.error as err:
        raise CodecError(f"malformed payload: {err}") from None


def pack_map(m: dict[int, bytes]) -> bytes:
    """An identifier-keyed map of byte strings."""
    fields: list[Field] = []
    for k in sorted(m):
        fields += [k, m[k]]
    return pack(*fields)


def unpack_map(data: bytes) -> dict[int, bytes]:
    try:
        (count,) = struct.unpack_from(">H", data, 0)
    except struct.error as err:
        raise CodecError(f"malformed map: {err}") from None
    if count % 2:
        raise CodecError("odd field count in map")
    fields = unpack(data, "ib" * (count // 2))
    out: dict[int, bytes] = {}
    for k, v in zip(fields[::2], fields[1::2], strict=True):
        assert isinstance(k, int) and isinstance(v, bytes)
        if k in out:
            raise CodecError(f"duplicate key {k}")
        out[k] = v
    return out


def unpack_ints(data: bytes) -> list[int]:
    """A payload of integers only, however many (e.g. an attempt and its suspects)."""
    try:
        (count,) = struct.unpack_from(">H", data, 0)
    except struct.error as err:
        raise CodecError(f"malformed payload: {err}") from None
    return [int(f) for f in unpack(data, "i" * count)]


def blame(culprits: list[int]) -> bytes:
    """An abort message's payload: whom the sender blames."""
    return pack(*sorted(set(culprits)))


def read_blame(payload: bytes, sender: int) -> list[int]:
    """Whom an abort message blames; a malformed accusation blames its sender."""
    try:
        return sorted(unpack_ints(payload))
    except CodecError:
        return [sender]


def pack_node_ids(ids: Iterable[int]) -> bytes:
    """Node ids as one field's bytes: each a big-endian u32 (node ids are u32 on the wire)."""
    return b"".join(i.to_bytes(4, "big") for i in ids)


def unpack_node_ids(data: bytes, at_most: int) -> tuple[int, ...]:
    """The node ids `pack_node_ids` wrote: at least one, at most `at_most`."""
    if not data or len(data) % 4 or len(data) > 4 * at_most:
        raise CodecError("node id list length")
    return tuple(x for (x,) in struct.iter_unpack(">I", data))
