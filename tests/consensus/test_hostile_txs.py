"""No transaction's content can stop the ledger.

Random signed transactions of every kind, with fields inside, at and beyond every limit of
`FIELD_LIMITS`, go through CheckTx, ProcessProposal and FinalizeBlock: nothing raises, and two
replicas fed the same blocks (one of them on PostgreSQL when it is configured) end every block
with the same app hash. The fields that once let a value of 2**63 through to the store are
pinned one by one, and the block-level guard is shown holding when a limit is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synod.consensus.app import Code, LedgerApp
from synod.consensus.committee import DEFAULT_PERMISSIONS, OPERATOR
from synod.consensus.signed import parse_body, signing_message
from synod.state.db import SqliteDatabase
from synod.state.errors import MalformedTransaction
from synod.state.machine import Ledger, withdraw_id_for
from synod.state.transactions import (
    CHAINS,
    FIELD_LIMITS,
    MAX_HEIGHT,
    MAX_TIME_MS,
    TX_TYPES,
    Activate,
    Addresses,
    Confirm,
    DepositCredit,
    Flag,
    Int,
    KeyReady,
    Keys,
    Limit,
    Members,
    OneOf,
    Outpoints,
    Text,
    Tx,
    WithdrawRequest,
)
from tests.consensus.conftest import (
    CHAIN_ID,
    COMMITTEE,
    IDENTITIES,
    by_operator,
    witnessed,
)
from tests.consensus.conftest import (
    OPERATOR as OPERATOR_KEY,
)
from tests.state.conftest import StoreFactory

REQUESTS = [f"r{i}" for i in range(3)]
WITHDRAWALS = [withdraw_id_for(r) for r in REQUESTS]
OUTPOINT = "ab" * 32 + ":0"
ETH_TO = "0x" + "11" * 20
BAD_TEXT = ["", "\x00", "a\x00b", "\ud800", "two words", "é", 5, None, True, ["x"], {"a": 1}]


REALISTIC: dict[str, list[Any]] = {
    "withdraw_id": WITHDRAWALS,
    "request_id": REQUESTS,
    "chain": ["eth", "btc", "sol"],
    "asset": ["ETH", "SOL", "USDT"],
    "ref": ["0xd1", "0xd2"],
    "script": [""],
    "session_id": ["s1", "s2"],
    "sign_context": ["", "bh-1"],
    "txid": ["0xaa", "0xbb"],
    "to": ["0x" + "11" * 20],
    "target": ["00" * 32],
    "verdict": ["valid", "forged"],
    "members": [[1, 2, 3], [2, 3, 4]],
    "culprits": [[], [4]],
    "spent_outpoints": [[]],
    "keys": [{"bip340": {"mode": "fresh", "group_key": "ab" * 32, "proof": "cd" * 64}}],
    "addresses": [{}, {"btc": {"address": "bc1p", "script": "5120" + "ab" * 32}}],
    "unspendable_proof": ["", "spent in block 9"],
    "nonce_spent": [False],
    "force": [False, True],
    "threshold": [1, 2],
}
"""Values a correct transaction would carry, so that random ones reach real state."""


def _valid(name: str, limit: Limit) -> st.SearchStrategy[Any]:
    """Inside the limit: a realistic value, or one exactly at the limit."""
    if isinstance(limit, Int):
        at = st.sampled_from([limit.low, limit.high])
        small = st.integers(limit.low, min(limit.high, limit.low + 3))
        return st.one_of(st.sampled_from(REALISTIC.get(name, [limit.low])), small, at)
    at_limit = []
    if isinstance(limit, Text) and name not in ("withdraw_id", "request_id"):
        at_limit = ["a" * limit.max_len]
    return st.sampled_from(REALISTIC.get(name, ["a reason"]) + at_limit)


def _beyond(limit: Limit) -> st.SearchStrategy[Any]:
    """Outside the limit, or of the wrong type."""
    if isinstance(limit, Int):
        huge = st.sampled_from([2**63, 2**64, 2**256, limit.high + 1, 2**63 - 1])
        wrong = st.sampled_from([limit.low - 1, "7", "1²", 1.5, True, None])
        return st.one_of(huge, st.integers(limit.high + 1, 2**300), wrong)
    if isinstance(limit, Text):
        return st.sampled_from(["a" * (limit.max_len + 1), *BAD_TEXT])
    if isinstance(limit, OneOf):
        return st.sampled_from(["doge", "", 5, None])
    if isinstance(limit, Flag):
        return st.sampled_from(["true", 1, None])
    if isinstance(limit, Members):
        return st.sampled_from([[], [0], [65536], [1, 1], ["1"], [True], list(range(1, 10_002))])
    if isinstance(limit, Outpoints):
        return st.sampled_from([["bad"], [OUTPOINT] * 4097, "x", [{"a": 1}]])
    if isinstance(limit, Keys):
        key = {"mode": "fresh", "group_key": "ab" * 32, "proof": "cd" * 64}
        return st.sampled_from(
            [
                {"bip340": {**key, "mode": "other"}},
                {"bip340": {**key, "extra": [1] * 10}},
                {"rsa": key},
                {},
                [],
                {"bip340": {**key, "group_key": "\x00"}},
            ]
        )
    if isinstance(limit, Addresses):
        return st.sampled_from(
            [
                {"btc": {"address": "bc1p"}},
                {"eth": {"address": "0x" + "22" * 20, "more": {"deep": 1}}},
                {"doge": {"address": "D"}},
                "x",
            ]
        )
    raise AssertionError(f"no strategy for {type(limit).__name__}")


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A correct body of a random kind, then (mostly) one field pushed to or past its limit,
    or dropped, or an unknown field added."""
    kind = draw(st.sampled_from([*sorted(TX_TYPES), "attest"]))
    names = ["target", "verdict"] if kind == "attest" else list(TX_TYPES[kind].__annotations__)
    names = [n for n in names if n != "KIND"]
    body: dict[str, Any] = {"kind": kind}
    for name in names:
        body[name] = draw(_valid(name, FIELD_LIMITS[name]))
    if kind == "deposit_credit" and body["chain"] == "btc":
        body.update(asset="BTC", ref=OUTPOINT, script="5120" + "ab" * 32)
    if kind == "withdraw_request" and body["chain"] == "btc":
        body["asset"] = "BTC"
    change = draw(st.integers(0, 9))
    name = draw(st.sampled_from(names))
    if change < 6:
        body[name] = draw(_beyond(FIELD_LIMITS[name]))
    elif change == 6:
        del body[name]
    elif change == 7:
        body["unknown"] = 1
    return body


@st.composite
def signed(draw: st.DrawFn) -> bytes:
    """A signed transaction: the key of a member or the operator, whichever may submit the
    kind (sometimes the other: unauthorized); a correct signature whenever the body parses."""
    body = draw(bodies())
    operator = body["kind"] in DEFAULT_PERMISSIONS[OPERATOR]
    if draw(st.integers(0, 9)) == 0:
        operator = not operator
    member = draw(st.integers(1, 4))
    signer, key = (
        ("operator:api", OPERATOR_KEY)
        if operator
        else (f"member:{member}", IDENTITIES[member].sign_secret)
    )
    try:
        signed_bytes = parse_body(body).canonical()
    except MalformedTransaction:  # refused before its signature is looked at
        signed_bytes = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    sig = key.sign(signing_message(CHAIN_ID, signer, signed_bytes))
    raw = {"v": 1, "signer": signer, "tx": body, "sig": sig.hex()}
    return json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()


def _replicas(new_store: StoreFactory, tmp_path: Path) -> list[LedgerApp]:
    """One replica on the parametrized store, one on SQLite: the same rules on both."""
    opener = new_store()
    path = tmp_path / f"replica-{len(list(tmp_path.iterdir()))}.db"
    return [
        LedgerApp(opener(), opener(), COMMITTEE),
        LedgerApp(SqliteDatabase(path), SqliteDatabase(path), COMMITTEE),
    ]


def _funding() -> list[bytes]:
    """Real state for the random transactions to act on: funds and three requests."""
    out = [
        *witnessed(DepositCredit("eth", "ETH", 10**18, "0xfund", 1)),
        *witnessed(DepositCredit("btc", "BTC", 10**6, "cd" * 32 + ":1", 1, "5120" + "ab" * 32)),
    ]
    for r in REQUESTS:
        out.append(by_operator(WithdrawRequest(r, "eth", "ETH", ETH_TO, 10**15)))
    return out


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(blocks=st.lists(st.lists(signed(), max_size=6), min_size=1, max_size=4))
def test_no_content_stops_the_ledger_and_replicas_agree(
    new_store: StoreFactory, tmp_path_factory: pytest.TempPathFactory, blocks: list[list[bytes]]
) -> None:
    apps = _replicas(new_store, tmp_path_factory.mktemp("replicas"))
    try:
        for raw in (tx for block in blocks for tx in block):
            for app in apps:
                outcome = app.check_tx(raw)  # a typed refusal, never the decoder's guard
                assert outcome.log != "undecodable", raw
        for height, txs in enumerate([_funding(), *blocks], start=1):
            accepted = {app.process_proposal(txs) for app in apps}
            assert len(accepted) == 1  # the same verdict on the same bytes
            kept = [app.prepare_proposal(txs, 1 << 22) for app in apps]
            assert kept[0] == kept[1]
            hashes = set()
            for app in apps:
                outcomes, app_hash = app.finalize_block(height, kept[0])
                assert len(outcomes) == len(kept[0])
                # The limits stop every value the store cannot take: the guard never fires.
                assert Code.FAILED not in {o.code for o in outcomes}
                app.commit()
                hashes.add(app_hash)
            assert len(hashes) == 1, f"replicas diverged at height {height}"
    finally:
        for app in apps:
            app.close()


BIG = 2**63
PINNED: list[Callable[[], Tx]] = [
    lambda: DepositCredit("eth", "ETH", 1, "0xbig", BIG),
    lambda: WithdrawRequest("big", "eth", "ETH", "0x" + "11" * 20, 1, requested_at=BIG),
    lambda: Confirm(WITHDRAWALS[0], "0xaa", BIG),
    lambda: KeyReady(1, {"bip340": {"mode": "fresh", "group_key": "ab", "proof": "cd"}}, {}, BIG),
    lambda: Activate(1, BIG),
]


@pytest.mark.parametrize(
    "make", PINNED, ids=["deposit", "request", "confirm", "key_ready", "activate"]
)
def test_values_beyond_the_stores_integers_are_refused_at_check_tx(
    make: Callable[[], Tx], sqlite_app: LedgerApp
) -> None:
    """2**63 passed CheckTx and ProcessProposal, then raised in FinalizeBlock on every replica,
    for good. Now each is malformed before it reaches a block."""
    tx = make()
    body = tx.body()
    kind = tx.KIND
    signer = "operator:api" if kind in DEFAULT_PERMISSIONS[OPERATOR] else "member:1"
    key = OPERATOR_KEY if signer.startswith("operator") else IDENTITIES[1].sign_secret
    sig = key.sign(signing_message(CHAIN_ID, signer, tx.canonical()))
    raw = json.dumps({"v": 1, "signer": signer, "tx": body, "sig": sig.hex()}).encode()
    outcome = sqlite_app.check_tx(raw)
    assert outcome.code == Code.MALFORMED and "must be within" in outcome.log
    assert sqlite_app.process_proposal([raw]) is False
    (result,), _ = sqlite_app.finalize_block(1, [raw])
    assert result.code == Code.MALFORMED
    sqlite_app.commit()
    assert MAX_HEIGHT < BIG and MAX_TIME_MS < BIG


def test_an_error_applying_one_transaction_fails_only_that_one(
    new_store: StoreFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: were a limit missing (the table loosened here), the store's error
    undoes that transaction alone, with the same outcome and app hash on SQLite and
    PostgreSQL, and the block still commits."""
    monkeypatch.setitem(FIELD_LIMITS, "requested_at", Int(0, 2**80))
    apps = _replicas(new_store, tmp_path)
    good = by_operator(WithdrawRequest("good", "eth", "ETH", ETH_TO, 5, requested_at=3))
    bad = by_operator(WithdrawRequest("bad", "eth", "ETH", ETH_TO, 7, requested_at=BIG))
    after = by_operator(WithdrawRequest("after", "sol", "SOL", "sol-to", 9, requested_at=4))
    try:
        results = []
        for app in apps:
            outcomes, app_hash = app.finalize_block(1, [good, bad, after])
            app.commit()
            results.append(([(o.code, o.log, o.data) for o in outcomes], app_hash))
            requests = {w.request_id for w in Ledger(app.reader).withdrawals()}
            assert requests == {"good", "after"}
        assert results[0] == results[1]
        codes = [code for code, _, _ in results[0][0]]
        assert codes == [Code.OK, Code.FAILED, Code.OK]
        assert results[0][0][1][1] == "failed to apply"
    finally:
        for app in apps:
            app.close()


def test_every_field_of_every_kind_has_a_limit() -> None:
    for cls in TX_TYPES.values():
        for name in cls.__annotations__:
            if name != "KIND":
                assert name in FIELD_LIMITS, (cls.__name__, name)
    with pytest.raises(TypeError, match="no limit"):
        type("Unlimited", (Tx,), {"__annotations__": {"free": "str"}})
    assert set(CHAINS) == set(FIELD_LIMITS["chain"].choices)  # type: ignore[attr-defined]
