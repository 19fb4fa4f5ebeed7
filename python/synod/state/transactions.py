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
from abc import ABC, abstractmethod
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
_TOKEN = re.compile(r"[\x21-\x7e]+")
"""An identifier: printable ASCII, no spaces (ids, hashes, assets, hex scripts)."""


def _is_decimal(value: str) -> bool:
    return _DIGITS.fullmatch(value) is not None


# ---------------------------------------------------------------------------------------------
# Field limits: one table for every transaction kind
#
# Every field of every ledger transaction has an explicit range or length here, checked when a
# transaction is parsed (CheckTx, ProcessProposal) and again by `Ledger.apply` when its block is
# applied. The ranges keep every value inside what both stores hold (SQLite INTEGER and
# PostgreSQL BIGINT are signed 64-bit; neither may get a NUL or an unpaired surrogate in TEXT),
# so no transaction's content can make a block fail to apply on one replica and not another.
# ---------------------------------------------------------------------------------------------

MAX_COUNT = 2**31 - 1
"""Attempts, batches and epochs: far above any real count."""
MAX_HEIGHT = 2**48
"""Block heights and slots (Solana's slot grows by 2.5 a second: 3,500 years of headroom)."""
MAX_TIME_MS = 2**48
"""Unix milliseconds (the year 10889)."""
MAX_AMOUNT = {
    "btc": 21_000_000 * 10**8,  # the supply cap, in satoshis
    "eth": 2**256 - 1,  # uint256 wei / token units
    "bnb": 2**256 - 1,
    "trx": 2**63 - 1,  # int64 sun
    "sol": 2**64 - 1,  # u64 lamports / token units
}
"""The largest amount, in base units, a transaction on each chain can carry."""
VERDICTS = ("valid", "forged")
"""A member's verdicts on a pending proof (`synod.consensus.signed.Attest`)."""
MAX_MEMBER = 65535
MAX_MEMBERS = 10_000
MAX_OUTPOINTS = 4096


class Limit(ABC):
    """A field's allowed values; `check` raises `MalformedTransaction` naming the field."""

    @abstractmethod
    def check(self, name: str, value: Any) -> None: ...


@dataclass(frozen=True)
class Int(Limit):
    low: int
    high: int

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise MalformedTransaction(f"{name} must be an integer")
        if not self.low <= value <= self.high:
            raise MalformedTransaction(f"{name} must be within {self.low}..{self.high}")


@dataclass(frozen=True)
class Text(Limit):
    """A string of `min_len`..`max_len` characters; `token`: printable ASCII without spaces.
    Any text must be storable as it is: valid UTF-8 (no unpaired surrogate) and no NUL."""

    max_len: int
    min_len: int = 1
    token: bool = False

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or not self.min_len <= len(value) <= self.max_len:
            what = "a non-empty string" if self.min_len else "a string"
            raise MalformedTransaction(
                f"{name} must be {what} of at most {self.max_len} characters"
            )
        if self.token and value and _TOKEN.fullmatch(value) is None:
            raise MalformedTransaction(f"{name} must be printable ASCII without spaces")
        if "\0" in value or (not value.isascii() and not _utf8(value)):
            raise MalformedTransaction(f"{name} must be text without NUL or unpaired surrogates")


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class OneOf(Limit):
    choices: tuple[str, ...]

    def check(self, name: str, value: Any) -> None:
        if value not in self.choices:
            raise MalformedTransaction(
                f"unknown {name} {value!r:.20} (expected one of {', '.join(self.choices)})"
            )


@dataclass(frozen=True)
class Flag(Limit):
    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise MalformedTransaction(f"{name} must be true or false")


@dataclass(frozen=True)
class Members(Limit):
    """Distinct member ids; `min_len` 0 allows none."""

    min_len: int = 1

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, list | tuple) or not self.min_len <= len(value) <= MAX_MEMBERS:
            raise MalformedTransaction(f"{name} must be a list of up to {MAX_MEMBERS} member ids")
        for m in value:
            if isinstance(m, bool) or not isinstance(m, int) or not 0 < m <= MAX_MEMBER:
                raise MalformedTransaction(
                    f"a member id is an integer in 1..{MAX_MEMBER}, not {m!r}"
                )
        if len(set(value)) != len(value):
            raise MalformedTransaction(f"{name} must not repeat")


@dataclass(frozen=True)
class Outpoints(Limit):
    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, list | tuple) or len(value) > MAX_OUTPOINTS:
            raise MalformedTransaction(
                f"{name} must be a list of up to {MAX_OUTPOINTS} 'txid:vout'"
            )
        for outpoint in value:
            _outpoint(outpoint)


@dataclass(frozen=True)
class Keys(Limit):
    """KeyReady's keys: each scheme to `{"mode": "reshare"|"fresh", "group_key", "proof"}`."""

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, dict) or not 1 <= len(value) <= len(SCHEMES):
            raise MalformedTransaction(f"{name} must name at least one scheme")
        for scheme, key in value.items():
            if scheme not in SCHEMES:
                raise MalformedTransaction(f"unknown scheme {scheme!r}")
            if not isinstance(key, dict) or set(key) != {"mode", "group_key", "proof"}:
                raise MalformedTransaction(f"{scheme}: a key has exactly mode, group_key, proof")
            if key["mode"] not in ("reshare", "fresh"):
                raise MalformedTransaction(f"{scheme}: mode must be 'reshare' or 'fresh'")
            Text(200, token=True).check(f"{scheme}.group_key", key["group_key"])
            Text(200, token=True).check(f"{scheme}.proof", key["proof"])


@dataclass(frozen=True)
class Addresses(Limit):
    """KeyReady's addresses: each chain whose key changed to `{"address"[, "script"]}`."""

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, dict) or len(value) > len(CHAINS):
            raise MalformedTransaction(f"{name} must map chains to their new address")
        for chain, addr in value.items():
            _chain(chain)
            needed = {"address", "script"} if chain == "btc" else {"address"}
            if not isinstance(addr, dict) or not needed <= set(addr) <= {"address", "script"}:
                raise MalformedTransaction(
                    f"{chain}: an address has {' and '.join(sorted(needed))}"
                    + ("" if chain == "btc" else " (and perhaps a script)")
                )
            Text(128, token=True).check(f"{chain}.address", addr["address"])
            if "script" in addr:
                Text(200, token=True).check(f"{chain}.script", addr["script"])


REASON = Text(1000)
FIELD_LIMITS: dict[str, Limit] = {
    "withdraw_id": Text(64, token=True),
    "request_id": Text(256),
    "attempt": Int(0, MAX_COUNT),
    "chain": OneOf(tuple(CHAINS)),
    "asset": Text(32, token=True),
    "amount": Int(1, max(MAX_AMOUNT.values())),
    "to": Text(128),
    "ref": Text(256, token=True),
    "height": Int(0, MAX_HEIGHT),
    "script": Text(200, min_len=0, token=True),
    "requested_at": Int(0, MAX_TIME_MS),
    "at": Int(0, MAX_TIME_MS),
    "session_id": Text(128, token=True),
    "sign_context": Text(128, min_len=0, token=True),
    "signature_ref": Text(1 << 20),  # one signature per Bitcoin input
    "txid": Text(128, token=True),
    "reason": REASON,
    "unspendable_proof": Text(1 << 16, min_len=0),
    "spent_outpoints": Outpoints(),
    "nonce_spent": Flag(),
    "members": Members(),
    "culprits": Members(min_len=0),
    "threshold": Int(1, MAX_MEMBERS),
    "force": Flag(),
    "epoch": Int(1, MAX_COUNT),
    "keys": Keys(),
    "addresses": Addresses(),
    "batch": Int(0, MAX_COUNT),
    "member": Int(1, MAX_MEMBER),
    "evidence": Text(256),
    "target": Text(64, token=True),
    "verdict": OneOf(VERDICTS),
}
"""Every field name of every transaction kind, and its limit: a field name means one thing in
every kind. A kind whose field is missing here fails at import (see `Tx.__init_subclass__`)."""


def _outpoint(value: Any) -> str:
    txid, _, vout = (value if isinstance(value, str) else "").partition(":")
    if len(txid) != 64 or not _is_decimal(vout) or len(vout) > 10:
        raise MalformedTransaction(f"an outpoint is 'txid:vout', not {value!r:.100}")
    Text(80, token=True).check("outpoint", value)
    return str(value)


def _chain(value: Any) -> str:
    FIELD_LIMITS["chain"].check("chain", value)
    return str(value)


def _amount_fits(chain: str, amount: int) -> None:
    if amount > MAX_AMOUNT[chain]:
        raise MalformedTransaction(
            f"amount exceeds the largest {chain} amount ({MAX_AMOUNT[chain]})"
        )


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unlimited = set(cls.__annotations__) - set(FIELD_LIMITS) - {"KIND"}
        if unlimited:
            raise TypeError(f"{cls.__name__}: no limit for {sorted(unlimited)} in FIELD_LIMITS")

    def validate(self) -> None:
        """Field checks that need no state (every field against `FIELD_LIMITS`, then the
        kind's own `rules`); raise `MalformedTransaction`."""
        for f in fields(self):
            FIELD_LIMITS[f.name].check(f.name, getattr(self, f.name))
        self.rules()

    def rules(self) -> None:
        """What the table cannot say: rules across fields (none by default)."""


@dataclass(frozen=True)
class DepositCredit(Tx):
    """Funds arrived: a deposit lot (account chains) or a UTXO (Bitcoin)."""

    KIND: ClassVar[str] = "deposit_credit"
    chain: str
    asset: str
    amount: int
    ref: str  # account chains: tx hash:index of the log/instruction in that tx; BTC: txid:vout
    height: int
    script: str = ""  # Bitcoin: the output's scriptPubKey (hex)

    def rules(self) -> None:
        _amount_fits(self.chain, self.amount)
        if self.chain == "btc":
            if self.asset != "BTC":
                raise MalformedTransaction("Bitcoin deposits are in BTC")
            _outpoint(self.ref)
            if not self.script:
                raise MalformedTransaction("a Bitcoin deposit needs the output's script")
        elif self.script:
            raise MalformedTransaction("only Bitcoin deposits carry a script")


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

    def rules(self) -> None:
        _amount_fits(self.chain, self.amount)


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


@dataclass(frozen=True)
class Signed(Tx):
    KIND: ClassVar[str] = "signed"
    withdraw_id: str
    session_id: str
    signature_ref: str
    attempt: int = 0


@dataclass(frozen=True)
class Broadcast(Tx):
    KIND: ClassVar[str] = "broadcast"
    withdraw_id: str
    txid: str
    attempt: int = 0


@dataclass(frozen=True)
class Confirm(Tx):
    KIND: ClassVar[str] = "confirm"
    withdraw_id: str
    txid: str
    height: int
    attempt: int = 0


@dataclass(frozen=True)
class Fail(Tx):
    """The broadcast transaction was rejected or timed out."""

    KIND: ClassVar[str] = "fail"
    withdraw_id: str
    reason: str
    attempt: int = 0


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

    def rules(self) -> None:
        if self.nonce_spent and not self.unspendable_proof:
            raise MalformedTransaction("nonce_spent needs the unspendable_proof that shows it")
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

    def rules(self) -> None:
        if not self.threshold <= len(self.members):
            raise MalformedTransaction(
                f"threshold must be within 1..{len(self.members)}, got {self.threshold}"
            )


@dataclass(frozen=True)
class KeygenStart(Tx):
    """DETECTED -> KEYGEN: the resharing or DKG sessions for the new committee started."""

    KIND: ClassVar[str] = "keygen_start"
    epoch: int
    session_id: str
    attempt: int = 0


@dataclass(frozen=True)
class KeygenFailed(Tx):
    """KEYGEN -> DETECTED (next attempt, without the culprits, who get a strike each), or
    ABORTED when too few members remain; the old committee stays in charge either way."""

    KIND: ClassVar[str] = "keygen_failed"
    epoch: int
    reason: str
    culprits: tuple[int, ...] = ()
    attempt: int = 0


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


@dataclass(frozen=True)
class MigrationStart(Tx):
    """KEY_READY -> MIGRATING: withdrawals reserved on a chain whose key changes but never
    signed give their funds back (their template is rebuilt for the new key later)."""

    KIND: ClassVar[str] = "migration_start"
    epoch: int


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


@dataclass(frozen=True)
class MigrationsDone(Tx):
    """MIGRATING -> MIGRATED: every migration confirmed, nothing left under the old key."""

    KIND: ClassVar[str] = "migrations_done"
    epoch: int


@dataclass(frozen=True)
class Activate(Tx):
    """MIGRATED -> ACTIVE: the new committee signs from now on; the old one is retired."""

    KIND: ClassVar[str] = "activate"
    epoch: int
    at: int


@dataclass(frozen=True)
class Strike(Tx):
    """A member proven to misbehave (an invalid signature share, DKG or reshare package)."""

    KIND: ClassVar[str] = "strike"
    member: int
    reason: str
    evidence: str


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
