"""Bitcoin withdrawal transactions, built deterministically from the custody template.

The transaction is a pure function of the template (and two system-wide choices: the network,
for decoding the recipient's address, and whether to add an OP_RETURN naming the withdrawal),
so every co-signer can rebuild it from the recorded template and compute the BIP341 sighash of
each input itself instead of trusting a coordinator's bytes.

Layout, fixed so the same template always gives the same bytes:

* version 2, locktime 0, every input with nSequence 0xfffffffd (BIP125 opt-in replace-by-fee,
  so a stuck withdrawal can be fee-bumped by the same custody, and no relative lock);
* inputs in template order (the state machine lists them oldest first);
* outputs: the payments in template order, then the change back to the custody's own script,
  then, if enabled, one OP_RETURN carrying the withdraw id(s). The OP_RETURN is zero-valued,
  so the fee the template reserved is unchanged (the fee rate drops by a few percent).

Signing is a Taproot key-path spend with SIGHASH_DEFAULT: one 64-byte BIP340 signature per
input, which commits to every input's amount and scriptPubKey (BIP341), so a signer that is
lied to about the amounts being spent produces a signature no node accepts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import coincurve

from synod.chains.bitcoin.address import AddressError, Network, address_script

VERSION = 2
LOCKTIME = 0
SEQUENCE = 0xFFFFFFFD
SIGHASH_DEFAULT = 0x00
MAX_MONEY = 21_000_000 * 100_000_000
MAX_OP_RETURN_DATA = 80  # bytes of data Bitcoin Core relays in one OP_RETURN by default
P2TR_DUST = 330  # sats: below this a P2TR output is dust to Bitcoin Core
KEY_PATH_SIGNATURE = 64  # bytes: BIP340 signature, SIGHASH_DEFAULT (no hash-type byte)

_OP_RETURN = 0x6A
_OP_PUSHDATA1 = 0x4C


class TemplateError(ValueError):
    """The template cannot be turned into a Bitcoin transaction (nothing is signed)."""


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 tagged hash: SHA256(SHA256(tag) || SHA256(tag) || data)."""
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def compact_size(n: int) -> bytes:
    """Bitcoin's variable-length integer (CompactSize) encoding."""
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _dsha256(data: bytes) -> bytes:
    return _sha256(_sha256(data))


@dataclass(frozen=True)
class OutPoint:
    """A previous output: txid in display (big-endian) hex and output index."""

    txid: str
    vout: int

    def __post_init__(self) -> None:
        if len(self.txid) != 64 or not all(c in "0123456789abcdef" for c in self.txid):
            raise TemplateError(f"a txid is 64 lowercase hex digits, got {self.txid!r}")
        if not 0 <= self.vout <= 0xFFFFFFFF:
            raise TemplateError(f"output index out of range: {self.vout}")

    @classmethod
    def parse(cls, text: str) -> OutPoint:
        """From the template's ``"<txid>:<vout>"``."""
        txid, sep, vout = text.partition(":")
        if not sep or not (vout.isascii() and vout.isdigit()) or str(int(vout)) != vout:
            raise TemplateError(f"an outpoint is '<txid>:<vout>', got {text!r}")
        return cls(txid, int(vout))

    def serialize(self) -> bytes:
        return bytes.fromhex(self.txid)[::-1] + struct.pack("<I", self.vout)

    def __str__(self) -> str:
        return f"{self.txid}:{self.vout}"


@dataclass(frozen=True)
class TxOut:
    value: int
    script_pubkey: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.value <= MAX_MONEY:
            raise TemplateError(f"output value out of range: {self.value}")

    def serialize(self) -> bytes:
        script = self.script_pubkey
        return struct.pack("<q", self.value) + compact_size(len(script)) + script


@dataclass(frozen=True)
class TxIn:
    """An input, with the output it spends (BIP341 sighashes commit to all of them)."""

    outpoint: OutPoint
    spent: TxOut
    sequence: int = SEQUENCE
    witness: tuple[bytes, ...] = ()

    def serialize(self) -> bytes:
        return self.outpoint.serialize() + b"\x00" + struct.pack("<I", self.sequence)


def _serialize_witness(stack: Sequence[bytes]) -> bytes:
    return compact_size(len(stack)) + b"".join(compact_size(len(i)) + i for i in stack)


def p2tr_output_key(script_pubkey: bytes) -> bytes | None:
    """The x-only output key of a P2TR scriptPubKey, or None for any other script."""
    if len(script_pubkey) == 34 and script_pubkey[:2] == b"\x51\x20":
        return script_pubkey[2:]
    return None


@dataclass(frozen=True)
class Transaction:
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    version: int = VERSION
    locktime: int = LOCKTIME

    def serialize(self, witness: bool = True) -> bytes:
        """Network serialization; BIP144 (marker, flag, witnesses) when any input has one."""
        segwit = witness and any(i.witness for i in self.inputs)
        parts = [struct.pack("<i", self.version)]
        if segwit:
            parts.append(b"\x00\x01")
        parts += [compact_size(len(self.inputs)), *(i.serialize() for i in self.inputs)]
        parts += [compact_size(len(self.outputs)), *(o.serialize() for o in self.outputs)]
        if segwit:
            parts += [_serialize_witness(i.witness) for i in self.inputs]
        parts.append(struct.pack("<I", self.locktime))
        return b"".join(parts)

    def hex(self) -> str:
        return self.serialize().hex()

    @property
    def txid(self) -> str:
        """Display hex of the hash without witnesses (what signatures cannot change)."""
        return _dsha256(self.serialize(witness=False))[::-1].hex()

    @property
    def wtxid(self) -> str:
        return _dsha256(self.serialize())[::-1].hex()

    @property
    def weight(self) -> int:
        return len(self.serialize(witness=False)) * 3 + len(self.serialize())

    @property
    def vsize(self) -> int:
        return (self.weight + 3) // 4

    def signed_vsize(self) -> int:
        """The vsize once every unsigned input carries a 64-byte key-path signature."""
        dummy = b"\x00" * KEY_PATH_SIGNATURE
        return self.with_witnesses([i.witness or (dummy,) for i in self.inputs]).vsize

    @property
    def fee(self) -> int:
        return sum(i.spent.value for i in self.inputs) - sum(o.value for o in self.outputs)

    @property
    def spent_outputs(self) -> list[TxOut]:
        return [i.spent for i in self.inputs]

    @functools.cached_property
    def _precomputed(self) -> dict[str, bytes]:
        """The BIP341 hashes shared by every input's sighash (computed once)."""
        return dict(
            prevouts=_sha256(b"".join(i.outpoint.serialize() for i in self.inputs)),
            amounts=_sha256(b"".join(struct.pack("<q", i.spent.value) for i in self.inputs)),
            scripts=_sha256(
                b"".join(
                    compact_size(len(i.spent.script_pubkey)) + i.spent.script_pubkey
                    for i in self.inputs
                )
            ),
            sequences=_sha256(b"".join(struct.pack("<I", i.sequence) for i in self.inputs)),
            outputs=_sha256(b"".join(o.serialize() for o in self.outputs)),
        )

    def sighash(self, index: int) -> bytes:
        """BIP341 signature hash of input `index` for a key-path spend, SIGHASH_DEFAULT."""
        if not 0 <= index < len(self.inputs):
            raise IndexError(f"input {index} of {len(self.inputs)}")
        if p2tr_output_key(self.inputs[index].spent.script_pubkey) is None:
            raise TemplateError(f"input {index} does not spend a P2TR output")
        h = self._precomputed
        msg = b"".join(
            [
                b"\x00",  # epoch
                bytes([SIGHASH_DEFAULT]),
                struct.pack("<i", self.version),
                struct.pack("<I", self.locktime),
                h["prevouts"],
                h["amounts"],
                h["scripts"],
                h["sequences"],
                h["outputs"],
                b"\x00",  # spend type: key path, no annex
                struct.pack("<I", index),
            ]
        )
        return tagged_hash("TapSighash", msg)

    def sighashes(self) -> list[bytes]:
        """What the signers sign: one 32-byte message per input, in input order."""
        return [self.sighash(i) for i in range(len(self.inputs))]

    def with_witnesses(self, witnesses: Sequence[Sequence[bytes]]) -> Transaction:
        if len(witnesses) != len(self.inputs):
            raise ValueError(f"{len(witnesses)} witnesses for {len(self.inputs)} inputs")
        inputs = tuple(
            replace(i, witness=tuple(bytes(x) for x in w))
            for i, w in zip(self.inputs, witnesses, strict=True)
        )
        return Transaction(inputs, self.outputs, self.version, self.locktime)

    def with_signatures(self, signatures: Sequence[bytes]) -> Transaction:
        """Attach one 64-byte key-path signature (SIGHASH_DEFAULT) per input."""
        for n, sig in enumerate(signatures):
            if len(sig) != KEY_PATH_SIGNATURE:
                raise ValueError(f"signature {n} is {len(sig)} bytes, expected 64")
        return self.with_witnesses([[sig] for sig in signatures])

    def invalid_signatures(self) -> list[int]:
        """Inputs whose witness is not a valid key-path signature under their output key."""
        bad = []
        for n, txin in enumerate(self.inputs):
            key = p2tr_output_key(txin.spent.script_pubkey)
            if key is None or len(txin.witness) != 1 or len(txin.witness[0]) != 64:
                bad.append(n)
                continue
            try:
                ok = coincurve.PublicKeyXOnly(key).verify(txin.witness[0], self.sighash(n))
            except ValueError:
                ok = False
            if not ok:
                bad.append(n)
        return bad


# -- signature references ---------------------------------------------------------------------


def encode_signature_ref(signatures: Iterable[bytes]) -> str:
    """The `signature_ref` of a Bitcoin withdrawal: hex signatures, one per input, comma-joined."""
    sigs = list(signatures)
    if not sigs or any(len(s) != KEY_PATH_SIGNATURE for s in sigs):
        raise ValueError("one 64-byte BIP340 signature per input")
    return ",".join(s.hex() for s in sigs)


def decode_signature_ref(ref: str) -> list[bytes]:
    try:
        sigs = [bytes.fromhex(part) for part in ref.split(",")]
    except ValueError:
        raise ValueError("signature_ref must be comma-separated hex signatures") from None
    if any(len(s) != KEY_PATH_SIGNATURE for s in sigs):
        raise ValueError("signature_ref must hold 64-byte BIP340 signatures")
    return sigs


# -- the template -----------------------------------------------------------------------------


def _sats(value: object, what: str) -> int:
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()):
        raise TemplateError(f"{what} must be a decimal string of sats, got {value!r}")
    if str(int(value)) != value or int(value) > MAX_MONEY:
        raise TemplateError(f"{what} is not a canonical amount: {value!r}")
    return int(value)


def _script(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TemplateError(f"{what} must be hex, got {value!r}")
    try:
        script = bytes.fromhex(value)
    except ValueError:
        raise TemplateError(f"{what} must be hex, got {value!r}") from None
    if not script or script.hex() != value:
        raise TemplateError(f"{what} must be non-empty lowercase hex")
    return script


@dataclass(frozen=True)
class Template:
    """A parsed Bitcoin withdrawal template (see the state machine's `_plan_btc`)."""

    withdraw_id: str
    inputs: tuple[TxIn, ...]
    payments: tuple[TxOut, ...]
    change: tuple[TxOut, ...]
    fee: int

    @classmethod
    def parse(cls, template: str | bytes | Mapping[str, Any], network: Network) -> Template:
        try:
            t: Any = json.loads(template) if isinstance(template, str | bytes) else template
        except ValueError:
            raise TemplateError("the template is not valid JSON") from None
        if not isinstance(t, Mapping) or t.get("chain") != "btc":
            raise TemplateError("not a Bitcoin (chain 'btc') template")
        wid = t.get("withdraw_id")
        if not isinstance(wid, str) or not wid:
            raise TemplateError("withdraw_id must be a non-empty string")
        raw_inputs, raw_outputs = t.get("inputs"), t.get("outputs")
        if not isinstance(raw_inputs, list) or not raw_inputs:
            raise TemplateError("a template spends at least one input")
        if not isinstance(raw_outputs, list) or not raw_outputs:
            raise TemplateError("a template pays at least one output")
        inputs = []
        for n, item in enumerate(raw_inputs):
            if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
                raise TemplateError(f"input {n} must be [outpoint, value, script]")
            spent = TxOut(_sats(item[1], f"input {n} value"), _script(item[2], f"input {n} script"))
            inputs.append(TxIn(OutPoint.parse(item[0]), spent))
        payments, change = [], []
        for n, out in enumerate(raw_outputs):
            if not isinstance(out, Mapping) or not isinstance(out.get("to"), str):
                raise TemplateError(f"output {n} must be an object with 'to'")
            value = _sats(out.get("value"), f"output {n} value")
            if out["to"] == "change":
                change.append(TxOut(value, _script(out.get("script"), f"output {n} script")))
                continue
            try:
                script = address_script(out["to"], network)
            except AddressError as err:
                raise TemplateError(f"output {n}: {err}") from None
            payments.append(TxOut(value, script))
        fee = _sats(t.get("fee"), "fee")
        paid = sum(o.value for o in payments) + sum(o.value for o in change)
        if sum(i.spent.value for i in inputs) - paid != fee:
            raise TemplateError("inputs minus outputs differ from the template's fee")
        if len({i.outpoint for i in inputs}) != len(inputs):
            raise TemplateError("an input is listed twice")
        return cls(wid, tuple(inputs), tuple(payments), tuple(change), fee)


def op_return_script(data: bytes) -> bytes:
    """OP_RETURN <data>, with the minimal push (data up to 80 bytes is relayed by default)."""
    if len(data) > MAX_OP_RETURN_DATA:
        raise TemplateError(f"OP_RETURN data is {len(data)} bytes, at most {MAX_OP_RETURN_DATA}")
    push = bytes([len(data)]) if len(data) < _OP_PUSHDATA1 else bytes([_OP_PUSHDATA1, len(data)])
    return bytes([_OP_RETURN]) + push + data


def build_batch(
    templates: Sequence[str | bytes | Mapping[str, Any] | Template],
    network: Network,
    *,
    op_return: bool = False,
) -> Transaction:
    """One unsigned transaction paying several withdrawals (each template's fee is kept).

    Inputs and payments follow the templates in order; change outputs paying the same script
    are merged into one (first appearance order); the OP_RETURN names every withdrawal,
    comma-separated.
    """
    if not templates:
        raise TemplateError("nothing to build")
    parsed = [t if isinstance(t, Template) else Template.parse(t, network) for t in templates]
    ids = [t.withdraw_id for t in parsed]
    if len(set(ids)) != len(ids):
        raise TemplateError("a withdrawal appears twice in the batch")
    inputs = [i for t in parsed for i in t.inputs]
    if len({i.outpoint for i in inputs}) != len(inputs):
        raise TemplateError("two templates spend the same input")
    outputs = [o for t in parsed for o in t.payments]
    change: dict[bytes, int] = {}
    for t in parsed:
        for o in t.change:
            change[o.script_pubkey] = change.get(o.script_pubkey, 0) + o.value
    outputs += [TxOut(value, script) for script, value in change.items()]
    if op_return:
        outputs.append(TxOut(0, op_return_script(",".join(ids).encode())))
    return Transaction(tuple(inputs), tuple(outputs))


def build_transaction(
    template: str | bytes | Mapping[str, Any] | Template,
    network: Network,
    *,
    op_return: bool = False,
) -> Transaction:
    """The unsigned transaction of one withdrawal template (deterministic)."""
    return build_batch([template], network, op_return=op_return)


def _rate(fee_rate: float | int | str | Fraction) -> Fraction:
    rate = Fraction(str(fee_rate)) if isinstance(fee_rate, float) else Fraction(fee_rate)
    if rate <= 0:
        raise ValueError("a fee rate is positive (sats per vbyte)")
    return rate


def cpfp_child(
    parent: Transaction,
    vout: int,
    fee_rate: float | int | str | Fraction,
    *,
    to_script: bytes | None = None,
) -> Transaction:
    """An unsigned child spending `parent`'s output `vout` (our change) so that parent and
    child together pay `fee_rate` sats/vbyte (and the child at least that on its own).

    The child pays back to the same script unless `to_script` is given; it is signed like any
    template (`sighash(0)`, key path) and is only relayed once the parent is known to the node.
    """
    if not 0 <= vout < len(parent.outputs):
        raise IndexError(f"the parent has no output {vout}")
    spent = parent.outputs[vout]
    if p2tr_output_key(spent.script_pubkey) is None:
        raise ValueError("the child can only spend a P2TR output of ours (key path)")
    rate = _rate(fee_rate)
    txin = TxIn(OutPoint(parent.txid, vout), spent)
    script = spent.script_pubkey if to_script is None else to_script
    draft = Transaction((txin,), (TxOut(0, script),))
    child_vsize = draft.signed_vsize()
    package = math.ceil(rate * (parent.signed_vsize() + child_vsize))
    fee = max(package - parent.fee, math.ceil(rate * child_vsize))
    if spent.value - fee < P2TR_DUST:
        raise ValueError(f"output {vout} ({spent.value} sats) cannot pay a {fee}-sat child fee")
    return Transaction((txin,), (TxOut(spent.value - fee, script),))
