"""The transactions of the custody state machine (seed 000 §8.3, "VM handlers").

Every decision that affects asset safety is one of these, applied in order by
`synod.state.machine.Ledger`. A transaction is plain data with a canonical
JSON form; its id is the SHA-256 of that form, so the same transaction applied
twice is recognised and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

from synod.state.errors import MalformedTransaction

CHAINS = {"btc": "BTC", "eth": "ETH", "bnb": "BNB", "trx": "TRX", "sol": "SOL"}
"""Chain id -> its native asset."""
SCHEMES = ("bip340", "ed25519", "ecdsa")
"""Signature schemes a committee holds a key for: FROST BIP340 (Bitcoin, EVM custody
contracts), FROST Ed25519 (Solana), CGGMP ECDSA (EVM in EOA mode, TRON)."""


_DIGITS = re.compile(r"[0-9]{1,78}")
"""A decimal string: ASCII digits only (int() would also read '٥٠' or '²'), at most 78."""


def _is_decimal(value: str) -> bool:
    return _DIGITS.fullmatch(value) is not None


def _amount(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedTransaction(f"{name} must be an integer (or a decimal string)")
    if isinstance(value, str) and not _is_decimal(value):
        raise MalformedTransaction(f"{name} must be an integer, got {value!r}")
    n = int(value)
    if n <= 0:
        raise MalformedTransaction(f"{name} must be positive, got {n}")
    return n


def _text(name: str, value: Any, max_len: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise MalformedTransaction(
            f"{name} must be a non-empty string of at most {max_len} characters"
        )
    return value


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedTransaction(f"{name} must be a non-negative integer")
    return value


def _outpoint(value: Any) -> str:
    txid, _, vout = _text("outpoint", value, 80).partition(":")
    if len(txid) != 64 or not _is_decimal(vout):
        raise MalformedTransaction(f"an outpoint is 'txid:vout', not {value!r}")
    return str(value)


def _about(tx: Any) -> None:
    """The fields every transaction about an existing withdrawal has."""
    _text("withdraw_id", tx.withdraw_id, 64)
    _count("attempt", tx.attempt)


def _chain(value: Any) -> str:
    chain = _text("chain", value, 8)
    if chain not in CHAINS:
        raise MalformedTransaction(f"unknown chain {chain!r} (expected one of {', '.join(CHAINS)})")
    return chain


@dataclass(frozen=True)
class Tx:
    KIND: ClassVar[str] = ""

    def body(self) -> dict[str, Any]:
        return {"kind": self.KIND, **{k: v for k, v in asdict(self).items()}}

    def canonical(self) -> bytes:
        return json.dumps(self.body(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def tx_id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def validate(self) -> None:
        """Field checks that need no state; raise `MalformedTransaction`."""


@dataclass(frozen=True)
class DepositCredit(Tx):
    """Funds arrived: a deposit lot (account chains) or a UTXO (Bitcoin)."""

    KIND: ClassVar[str] = "deposit_credit"
    chain: str
    asset: str
    amount: int
    ref: str  # account chains: deposit tx hash (+ log index); Bitcoin: "txid:vout"
    height: int
    script: str = ""  # Bitcoin: the output's scriptPubKey (hex)

    def validate(self) -> None:
        _chain(self.chain)
        _text("asset", self.asset, 32)
        _amount("amount", self.amount)
        _text("ref", self.ref)
        if not isinstance(self.height, int) or self.height < 0:
            raise MalformedTransaction("height must be a non-negative integer")
        if self.chain == "btc":
            if self.asset != "BTC":
                raise MalformedTransaction("Bitcoin deposits are in BTC")
            _outpoint(self.ref)
            _text("script", self.script, 200)


@dataclass(frozen=True)
class WithdrawRequest(Tx):
    """A user asked for a withdrawal; `request_id` is unique (e.g. the burn on the home chain)."""

    KIND: ClassVar[str] = "withdraw_request"
    request_id: str
    chain: str
    asset: str
    to: str
    amount: int
    # When the requester submitted it (Unix milliseconds, 0 = not given): data of the request,
    # so the ledger records it without reading a clock.
    requested_at: int = 0

    def body(self) -> dict[str, Any]:
        body = super().body()
        if not self.requested_at:  # requests from before the field keep their ids
            del body["requested_at"]
        return body

    def validate(self) -> None:
        _text("request_id", self.request_id)
        _chain(self.chain)
        _text("asset", self.asset, 32)
        _text("to", self.to, 128)
        _amount("amount", self.amount)
        _count("requested_at", self.requested_at)


@dataclass(frozen=True)
class Reserve(Tx):
    """Fix the funds and the exact transaction template of the oldest queued withdrawal.

    `attempt` (on every transaction about an existing withdrawal) is the number of
    times it was re-queued: it makes a legitimate repeat a new transaction, and a
    delayed transaction from an earlier attempt a rejected one.
    """

    KIND: ClassVar[str] = "reserve"
    withdraw_id: str
    attempt: int = 0

    def validate(self) -> None:
        _about(self)


@dataclass(frozen=True)
class StartSign(Tx):
    """Begin signing a withdrawal's template in `session_id`.

    `sign_context` is the chain data the signed bytes commit to beyond the template, agreed
    here so that every member signs the same message: a Solana recent blockhash. It is fixed
    for the template (a retry of the same template must carry the same one, or none); only a
    Requeue with an unspendable proof, which releases the template, frees it. Empty when the
    chain has none; then it is left out of the canonical form, so such ids never change.
    """

    KIND: ClassVar[str] = "start_sign"
    withdraw_id: str
    session_id: str
    attempt: int = 0
    sign_context: str = ""

    def body(self) -> dict[str, Any]:
        body = super().body()
        if not self.sign_context:
            del body["sign_context"]
        return body

    def validate(self) -> None:
        _about(self)
        _text("session_id", self.session_id, 128)
        if self.sign_context:
            _text("sign_context", self.sign_context, 128)


@dataclass(frozen=True)
class Signed(Tx):
    KIND: ClassVar[str] = "signed"
    withdraw_id: str
    session_id: str
    signature_ref: str
    attempt: int = 0

    def validate(self) -> None:
        _about(self)
        _text("session_id", self.session_id, 128)
        _text("signature_ref", self.signature_ref, 1 << 20)  # one signature per BTC input


@dataclass(frozen=True)
class Broadcast(Tx):
    KIND: ClassVar[str] = "broadcast"
    withdraw_id: str
    txid: str
    attempt: int = 0

    def validate(self) -> None:
        _about(self)
        _text("txid", self.txid, 128)


@dataclass(frozen=True)
class Confirm(Tx):
    KIND: ClassVar[str] = "confirm"
    withdraw_id: str
    txid: str
    height: int
    attempt: int = 0

    def validate(self) -> None:
        _about(self)
        _text("txid", self.txid, 128)
        _count("height", self.height)


@dataclass(frozen=True)
class Fail(Tx):
    """The broadcast transaction was rejected or timed out."""

    KIND: ClassVar[str] = "fail"
    withdraw_id: str
    reason: str
    attempt: int = 0

    def validate(self) -> None:
        _about(self)
        _text("reason", self.reason, 1000)


@dataclass(frozen=True)
class Requeue(Tx):
    """Back to QUEUED: SIGNING on session timeout, or FAILED by retry policy.

    The template is kept unless `unspendable_proof` shows the old one can never be
    mined (its inputs spent elsewhere, or its validity window passed); only then
    are the funds released and a new template allowed. `spent_outpoints` names the
    Bitcoin inputs the proof shows spent by another transaction: they are gone, so
    they are written off instead of going back to the pool. `nonce_spent` (EVM EOA
    mode) says the proof shows the withdrawal's account nonce used up by one of its
    own transactions that reverted: nothing can pay at that nonce any more, so the
    burned fee is booked and the next reservation takes a fresh nonce.
    """

    KIND: ClassVar[str] = "requeue"
    withdraw_id: str
    reason: str
    unspendable_proof: str = ""
    attempt: int = 0
    spent_outpoints: tuple[str, ...] = ()
    nonce_spent: bool = False

    def validate(self) -> None:
        _about(self)
        _text("reason", self.reason, 1000)
        if not isinstance(self.unspendable_proof, str) or len(self.unspendable_proof) > 1 << 16:
            raise MalformedTransaction("unspendable_proof must be a string of at most 64 KiB")
        if not isinstance(self.nonce_spent, bool) or (
            self.nonce_spent and not self.unspendable_proof
        ):
            raise MalformedTransaction("nonce_spent needs the unspendable_proof that shows it")
        if not isinstance(self.spent_outpoints, list | tuple):
            raise MalformedTransaction("spent_outpoints must be a list of 'txid:vout'")
        for outpoint in self.spent_outpoints:
            _outpoint(outpoint)
        if self.spent_outpoints and not self.unspendable_proof:
            raise MalformedTransaction("spent_outpoints need the unspendable_proof that shows them")


@dataclass(frozen=True)
class Cancel(Tx):
    """The requester withdrew a request that is still QUEUED and was never given funds or a
    template (nothing can have been signed for it); afterwards it is CANCELLED for good."""

    KIND: ClassVar[str] = "cancel"
    withdraw_id: str
    reason: str
    attempt: int = 0

    def validate(self) -> None:
        _about(self)
        _text("reason", self.reason, 1000)


def _members(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value or len(value) > 10_000:
        raise MalformedTransaction("members must be a non-empty list of member ids")
    for m in value:
        if isinstance(m, bool) or not isinstance(m, int) or not 0 < m < 1 << 16:
            raise MalformedTransaction(f"a member id is an integer in 1..65535, not {m!r}")
    if len(set(value)) != len(value):
        raise MalformedTransaction("members must not repeat")
    return tuple(value)


def _epoch(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedTransaction("epoch must be a positive integer")
    return value


@dataclass(frozen=True)
class SignerSetUpdate(Tx):
    """The eligible signer set changed (from configuration or an operator). It opens a power
    transition to a committee of these members (minus any over the strike limit) when the
    change reaches the trigger ratio, or when `force` asks for one."""

    KIND: ClassVar[str] = "signer_set_update"
    members: tuple[int, ...]
    threshold: int
    reason: str
    force: bool = False

    def validate(self) -> None:
        members = _members(self.members)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise MalformedTransaction("threshold must be an integer")
        if not 1 <= self.threshold <= len(members):
            raise MalformedTransaction(
                f"threshold must be within 1..{len(members)}, got {self.threshold}"
            )
        _text("reason", self.reason, 1000)
        if not isinstance(self.force, bool):
            raise MalformedTransaction("force must be true or false")


@dataclass(frozen=True)
class KeygenStart(Tx):
    """DETECTED -> KEYGEN: the resharing or DKG sessions for the new committee started."""

    KIND: ClassVar[str] = "keygen_start"
    epoch: int
    session_id: str
    attempt: int = 0

    def validate(self) -> None:
        _epoch(self.epoch)
        _count("attempt", self.attempt)
        _text("session_id", self.session_id, 128)


@dataclass(frozen=True)
class KeygenFailed(Tx):
    """KEYGEN -> DETECTED (next attempt, without the culprits, who get a strike each), or
    ABORTED when too few members remain; the old committee stays in charge either way."""

    KIND: ClassVar[str] = "keygen_failed"
    epoch: int
    reason: str
    culprits: tuple[int, ...] = ()
    attempt: int = 0

    def validate(self) -> None:
        _epoch(self.epoch)
        _count("attempt", self.attempt)
        _text("reason", self.reason, 1000)
        if self.culprits:
            _members(self.culprits)


@dataclass(frozen=True)
class KeyReady(Tx):
    """KEYGEN -> KEY_READY: the new committee holds its shares, and signed a dummy message with
    them that an independent verifier accepted. `keys` maps each scheme to
    `{"mode": "reshare"|"fresh", "group_key": hex, "proof": hex signature}`; `addresses`
    maps each chain whose key changed to `{"address": ..., "script": hex (Bitcoin)}`.
    `culprits` were named during this attempt and excluded without failing it; `at` is
    the runtime's clock (Unix ms), data of the transaction, for the switch window."""

    KIND: ClassVar[str] = "key_ready"
    epoch: int
    keys: dict[str, dict[str, str]]
    addresses: dict[str, dict[str, str]]
    at: int
    attempt: int = 0
    culprits: tuple[int, ...] = ()

    def validate(self) -> None:
        _epoch(self.epoch)
        _count("attempt", self.attempt)
        _count("at", self.at)
        if self.culprits:
            _members(self.culprits)
        if not isinstance(self.keys, dict) or not self.keys:
            raise MalformedTransaction("keys must name at least one scheme")
        for scheme, key in self.keys.items():
            if scheme not in SCHEMES:
                raise MalformedTransaction(f"unknown scheme {scheme!r}")
            if not isinstance(key, dict) or key.get("mode") not in ("reshare", "fresh"):
                raise MalformedTransaction(f"{scheme}: mode must be 'reshare' or 'fresh'")
            _text(f"{scheme}.group_key", key.get("group_key"), 200)
            _text(f"{scheme}.proof", key.get("proof"), 200)
        if not isinstance(self.addresses, dict):
            raise MalformedTransaction("addresses must map chains to their new address")
        for chain, addr in self.addresses.items():
            _chain(chain)
            if not isinstance(addr, dict):
                raise MalformedTransaction(f"{chain}: address must be an object")
            _text(f"{chain}.address", addr.get("address"), 128)
            if chain == "btc":
                _text("btc.script", addr.get("script"), 200)


@dataclass(frozen=True)
class MigrationStart(Tx):
    """KEY_READY -> MIGRATING: withdrawals reserved on a chain whose key changes but never
    signed give their funds back (their template is rebuilt for the new key later)."""

    KIND: ClassVar[str] = "migration_start"
    epoch: int

    def validate(self) -> None:
        _epoch(self.epoch)


@dataclass(frozen=True)
class MigrationRequest(Tx):
    """One migration transaction, reserved at once like a withdrawal: a Bitcoin sweep of up to
    the configured batch of old-key UTXOs, a balance transfer of one asset, or the custody
    contract's `updatePubkey`. `batch` numbers them per chain and asset."""

    KIND: ClassVar[str] = "migration_request"
    epoch: int
    chain: str
    asset: str
    batch: int = 0

    def validate(self) -> None:
        _epoch(self.epoch)
        _chain(self.chain)
        _text("asset", self.asset, 32)
        _count("batch", self.batch)


@dataclass(frozen=True)
class MigrationsDone(Tx):
    """MIGRATING -> MIGRATED: every migration confirmed, nothing left under the old key."""

    KIND: ClassVar[str] = "migrations_done"
    epoch: int

    def validate(self) -> None:
        _epoch(self.epoch)


@dataclass(frozen=True)
class Activate(Tx):
    """MIGRATED -> ACTIVE: the new committee signs from now on; the old one is retired."""

    KIND: ClassVar[str] = "activate"
    epoch: int
    at: int

    def validate(self) -> None:
        _epoch(self.epoch)
        _count("at", self.at)


@dataclass(frozen=True)
class Strike(Tx):
    """A member proven to misbehave (an invalid signature share, DKG or reshare package)."""

    KIND: ClassVar[str] = "strike"
    member: int
    reason: str
    evidence: str

    def validate(self) -> None:
        _members((self.member,))
        _text("reason", self.reason, 1000)
        _text("evidence", self.evidence, 256)


TX_TYPES: dict[str, type[Tx]] = {
    cls.KIND: cls
    for cls in (
        DepositCredit,
        WithdrawRequest,
        Reserve,
        StartSign,
        Signed,
        Broadcast,
        Confirm,
        Fail,
        Requeue,
        Cancel,
        SignerSetUpdate,
        KeygenStart,
        KeygenFailed,
        KeyReady,
        MigrationStart,
        MigrationRequest,
        MigrationsDone,
        Activate,
        Strike,
    )
}


def parse_tx(data: dict[str, Any] | bytes | str) -> Tx:
    """Build a transaction from its JSON form; anything off raises `MalformedTransaction`."""
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as err:
            raise MalformedTransaction(f"not JSON: {err}") from None
    if not isinstance(data, dict):
        raise MalformedTransaction("a transaction is a JSON object")
    kind = data.get("kind")
    cls = TX_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedTransaction(f"unknown transaction kind {kind!r}")
    names = {f.name for f in fields(cls)}
    given = set(data) - {"kind"}
    if given - names:
        raise MalformedTransaction(f"{kind}: unknown fields {sorted(given - names)}")
    missing = {f.name for f in fields(cls) if f.name not in given and f.default is MISSING}
    if missing:
        raise MalformedTransaction(f"{kind}: missing fields {sorted(missing)}")
    values = {k: data[k] for k in given}
    for f in fields(cls):
        if f.name in values:
            v = values[f.name]
            if f.type == "int" and isinstance(v, str) and _is_decimal(v):
                values[f.name] = int(v)
            elif f.type == "int" and (isinstance(v, bool) or not isinstance(v, int)):
                raise MalformedTransaction(f"{kind}: {f.name} must be an integer")
            elif f.type == "bool" and not isinstance(v, bool):
                raise MalformedTransaction(f"{kind}: {f.name} must be true or false")
            elif f.type == "str" and not isinstance(v, str):
                raise MalformedTransaction(f"{kind}: {f.name} must be a string")
    tx = cls(**values)
    tx.validate()
    return tx
