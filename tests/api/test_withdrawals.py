"""Withdrawals through the API: submission, idempotency, validation (nothing written on a 422),
reads with filters and cursors, cancellation, balances, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from synod.api.auth import Role
from synod.api.problems import PROBLEM_JSON
from synod.state.machine import BALANCE_FIELDS
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Reserve,
    Signed,
    StartSign,
)

from .addresses import MALFORMED, VALID
from .conftest import Api

SCRIPT = "5120" + "ab" * 32


def fund(api: Api) -> None:
    api.ledger.apply(DepositCredit("btc", "BTC", 1_000_000, f"{1:064x}:0", 1, SCRIPT))
    api.ledger.apply(DepositCredit("eth", "ETH", 10**18, "0xdep1", 1))
    api.ledger.apply(DepositCredit("eth", "USDT", 10**9, "0xdep2", 1))


def body(**over: Any) -> dict[str, Any]:
    b = {
        "chain": "btc",
        "asset": "BTC",
        "destination": VALID["btc"],
        "amount": "150000",
        "external_id": "payout-1",
    }
    b.update(over)
    return b


def problem(response: Any, status: int, slug: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    p: dict[str, Any] = response.json()
    assert p["type"] == f"urn:synod:problem:{slug}" and p["status"] == status
    if field is not None:
        assert p["field"] == field
    return p


def test_submit_read_and_list(api: Api) -> None:
    fund(api)
    r = api.client.post("/v1/withdrawals", json=body(), headers=api.headers())
    assert r.status_code == 201, r.text
    w = r.json()
    assert r.headers["location"] == f"/v1/withdrawals/{w['id']}"
    assert (w["state"], w["amount"], w["external_id"]) == ("QUEUED", "150000", "payout-1")
    assert [h["transaction"] for h in w["history"]] == ["withdraw_request"]
    assert api.ledger.withdrawal(w["id"]).request_id == "payout-1"  # written through the ledger

    # The ledger moves it on; the API shows the history, template hash, sessions and txid.
    wid = w["id"]
    api.consensus.submit(Reserve(wid))
    api.consensus.submit(StartSign(wid, "sess-1"))
    api.consensus.submit(Signed(wid, "sess-1", "sig"))
    api.consensus.submit(Broadcast(wid, "aa" * 32))
    api.consensus.submit(Confirm(wid, "aa" * 32, 7))
    got = api.client.get(f"/v1/withdrawals/{wid}", headers=api.headers(Role.VIEWER)).json()
    assert got["state"] == "CONFIRMED" and got["txid"] == "aa" * 32
    assert got["template_hash"] == api.ledger.withdrawal(wid).template_hash
    assert got["signing_sessions"] == ["sess-1"] and got["confirmed_height"] == 7
    assert [h["state"] for h in got["history"]] == [
        "QUEUED",
        "RESERVED",
        "SIGNING",
        "SIGNED",
        "BROADCAST",
        "CONFIRMED",
    ]

    for i in range(2, 7):
        chain, asset = ("eth", "USDT") if i % 2 else ("btc", "BTC")
        r = api.client.post(
            "/v1/withdrawals",
            json=body(
                chain=chain,
                asset=asset,
                destination=VALID[chain],
                amount=str(1000 * i),
                external_id=f"payout-{i}",
            ),
            headers=api.headers(),
        )
        assert r.status_code == 201, r.text
    by_ext = api.client.get(
        "/v1/withdrawals", params={"external_id": "payout-3"}, headers=api.headers(Role.VIEWER)
    ).json()
    assert [w["external_id"] for w in by_ext["items"]] == ["payout-3"]
    queued_btc = api.client.get(
        "/v1/withdrawals", params={"state": "QUEUED", "chain": "btc"}, headers=api.headers()
    ).json()
    assert [w["external_id"] for w in queued_btc["items"]] == ["payout-2", "payout-4", "payout-6"]

    # Cursor pagination walks every withdrawal exactly once, in request order.
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.client.get("/v1/withdrawals", params=params, headers=api.headers()).json()
        seen += [w["external_id"] for w in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"payout-{i}" for i in range(1, 7)]
    newest = api.client.get(
        "/v1/withdrawals", params={"order": "desc", "limit": 4}, headers=api.headers()
    ).json()
    assert [w["external_id"] for w in newest["items"]] == [f"payout-{i}" for i in (6, 5, 4, 3)]
    older = api.client.get(
        "/v1/withdrawals",
        params={"order": "desc", "cursor": newest["next_cursor"]},
        headers=api.headers(),
    ).json()
    assert [w["external_id"] for w in older["items"]] == ["payout-2", "payout-1"]

    # Time range: everything was requested just now.
    future = api.client.get(
        "/v1/withdrawals",
        params={"created_after": "2999-01-01T00:00:00Z"},
        headers=api.headers(),
    ).json()
    assert future["items"] == []
    past = api.client.get(
        "/v1/withdrawals",
        params={"created_after": "2000-01-01T00:00:00+00:00", "limit": 200},
        headers=api.headers(),
    ).json()
    assert len(past["items"]) == 6
    problem(
        api.client.get("/v1/withdrawals", params={"cursor": "junk!"}, headers=api.headers()),
        422,
        "invalid-cursor",
        "query.cursor",
    )
    problem(
        api.client.get("/v1/withdrawals", params={"state": "LOST"}, headers=api.headers()),
        422,
        "validation-error",
        "query.state",
    )
    problem(api.client.get("/v1/withdrawals/nope", headers=api.headers()), 404, "not-found")


def test_idempotency_key_and_external_id(api: Api) -> None:
    fund(api)
    headers = api.headers(**{"Idempotency-Key": "k-1"})
    first = api.client.post("/v1/withdrawals", json=body(), headers=headers)
    assert first.status_code == 201
    again = api.client.post("/v1/withdrawals", json=body(), headers=headers)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    before = api.snapshot()
    other = api.client.post("/v1/withdrawals", json=body(amount="1"), headers=headers)
    problem(other, 409, "idempotency-key-reused", "header.Idempotency-Key")
    reused = api.client.post("/v1/withdrawals", json=body(amount="7"), headers=api.headers())
    p = problem(reused, 409, "duplicate-external-id", "body.external_id")
    assert p["withdrawal_id"] == first.json()["id"]
    assert api.snapshot() == before
    assert len(api.ledger.withdrawals()) == 1


BAD_INPUTS: list[tuple[dict[str, Any], str, str]] = [
    ({"amount": "0"}, "invalid-amount", "body.amount"),
    ({"amount": "-5"}, "invalid-amount", "body.amount"),
    ({"amount": "1.5"}, "invalid-amount", "body.amount"),
    ({"amount": "1e5"}, "invalid-amount", "body.amount"),
    ({"amount": " 12"}, "invalid-amount", "body.amount"),
    ({"amount": str(21_000_000 * 10**8 + 1)}, "invalid-amount", "body.amount"),
    (
        {"chain": "eth", "asset": "ETH", "destination": VALID["eth"], "amount": str(2**256)},
        "invalid-amount",
        "body.amount",
    ),
    ({"amount": 150000}, "validation-error", "body.amount"),  # a number, not a string
    ({"chain": "doge"}, "unknown-chain", "body.chain"),
    ({"chain": "eth", "asset": "SHIB", "destination": VALID["eth"]}, "unknown-asset", "body.asset"),
    ({"asset": "ETH"}, "unknown-asset", "body.asset"),
    ({"external_id": ""}, "validation-error", "body.external_id"),
    ({"memo": "x"}, "validation-error", "body.memo"),
] + [
    (
        {
            "chain": chain,
            "asset": {"btc": "BTC", "eth": "ETH", "bnb": "BNB", "trx": "TRX", "sol": "SOL"}[chain],
            "destination": bad,
        },
        "invalid-address",
        "body.destination",
    )
    for chain, bads in MALFORMED.items()
    for bad in bads
]


@pytest.mark.parametrize(("override", "slug", "field"), BAD_INPUTS)
def test_invalid_requests_write_nothing(
    api: Api, override: dict[str, Any], slug: str, field: str
) -> None:
    fund(api)
    before = api.snapshot()
    audit_before = api.audit.verify().rows
    r = api.client.post("/v1/withdrawals", json=body(**override), headers=api.headers())
    problem(r, 422, slug, field)
    assert api.snapshot() == before
    assert api.audit.verify().rows == audit_before + 1  # the refused call itself is audited


def test_every_chain_accepts_its_valid_address(api: Api) -> None:
    for chain, asset in (("bnb", "BNB"), ("trx", "TRX"), ("sol", "SOL"), ("eth", "ETH")):
        r = api.client.post(
            "/v1/withdrawals",
            json=body(chain=chain, asset=asset, destination=VALID[chain], external_id=chain),
            headers=api.headers(),
        )
        assert r.status_code == 201, r.text


def test_cancel_while_queued_only(api: Api) -> None:
    fund(api)
    a = api.client.post("/v1/withdrawals", json=body(), headers=api.headers()).json()
    b = api.client.post(
        "/v1/withdrawals", json=body(external_id="payout-2"), headers=api.headers()
    ).json()
    problem(
        api.client.post(f"/v1/withdrawals/{a['id']}/cancel", headers=api.headers(Role.VIEWER)),
        403,
        "forbidden",
    )
    done = api.client.post(
        f"/v1/withdrawals/{a['id']}/cancel", json={"reason": "user asked"}, headers=api.headers()
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "CANCELLED" and done.json()["reason"] == "user asked"
    assert [h["transaction"] for h in done.json()["history"]] == ["withdraw_request", "cancel"]
    api.consensus.submit(Reserve(b["id"]))
    before = api.snapshot()
    refused = api.client.post(f"/v1/withdrawals/{b['id']}/cancel", headers=api.headers())
    p = problem(refused, 409, "invalid-transition")
    assert p["state"] == "RESERVED" and "needs" in p["detail"]
    assert api.snapshot() == before
    again = api.client.post(f"/v1/withdrawals/{a['id']}/cancel", headers=api.headers())
    assert again.status_code == 200 and again.json() == done.json()  # safe to retry


def test_balances_conserve_and_deposits_page(api: Api) -> None:
    fund(api)
    wid = api.client.post("/v1/withdrawals", json=body(), headers=api.headers()).json()["id"]
    api.consensus.submit(Reserve(wid))
    balances = api.client.get("/v1/balances", headers=api.headers(Role.VIEWER)).json()["items"]
    assert {(b["chain"], b["asset"]) for b in balances} == {
        ("btc", "BTC"),
        ("eth", "ETH"),
        ("eth", "USDT"),
    }
    for b in balances:
        parts = sum(int(b[k]) for k in BALANCE_FIELDS[1:])
        assert int(b["deposited"]) == parts and b["conserved"] is True
    btc = next(b for b in balances if b["chain"] == "btc")
    assert int(btc["reserved"]) > 0 and int(btc["available"]) < 1_000_000
    deposits = api.client.get(
        "/v1/deposits", params={"chain": "eth", "limit": 1}, headers=api.headers()
    ).json()
    assert [d["asset"] for d in deposits["items"]] == ["ETH"]
    rest = api.client.get(
        "/v1/deposits",
        params={"chain": "eth", "cursor": deposits["next_cursor"]},
        headers=api.headers(),
    ).json()
    assert [d["asset"] for d in rest["items"]] == ["USDT"] and rest["next_cursor"] is None
