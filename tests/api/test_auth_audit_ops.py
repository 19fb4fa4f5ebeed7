"""Tokens and roles, rate limits (per token, and per client address without a valid token),
the audit trail (on SQLite and PostgreSQL), metrics, health and the OpenAPI document."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient

from synod import logs
from synod.api.app import ApiSettings
from synod.api.auth import RateLimiter, Role, client_key, token_hash
from synod.chains.bitcoin.address import Network
from synod.metrics import REGISTRY
from synod.state.audit import AuditAction, AuditLog
from synod.state.transactions import DepositCredit

from ..state.conftest import Opener, StoreFactory
from .addresses import VALID
from .conftest import Api, make_api
from .test_withdrawals import body, problem


def test_tokens_roles_and_what_is_stored(api: Api) -> None:
    problem(api.client.get("/v1/balances"), 401, "unauthenticated")
    r = api.client.get("/v1/balances", headers={"Authorization": "Bearer synod_nope"})
    problem(r, 401, "unauthenticated")
    assert "invalid_token" in r.headers["www-authenticate"]
    problem(
        api.client.post("/v1/withdrawals", json=body(), headers=api.headers(Role.VIEWER)),
        403,
        "forbidden",
    )
    problem(api.client.get("/v1/audit", headers=api.headers(Role.OPERATOR)), 403, "forbidden")
    assert api.client.get("/v1/audit", headers=api.headers(Role.ADMIN)).status_code == 200
    # Only hashes are stored: no secret appears anywhere in the store.
    dump = json.dumps(api.ledger.db.query("SELECT * FROM api_tokens"))
    dump += json.dumps(api.ledger.db.query("SELECT * FROM audit_log"))
    for secret in api.secrets.values():
        assert secret not in dump and token_hash(secret) in dump
    viewer = next(t for t in api.tokens.list() if t.role is Role.VIEWER)
    assert api.tokens.revoke(viewer.token_id)
    problem(
        api.client.get("/v1/balances", headers=api.headers(Role.VIEWER)), 401, "unauthenticated"
    )


def test_rate_limit_per_token(new_store: StoreFactory, tmp_path: Path) -> None:
    settings = ApiSettings(btc_network=Network.REGTEST, rate_per_second=0.001, burst=3)
    for api in make_api(new_store, tmp_path, settings):
        for _ in range(3):
            assert api.client.get("/v1/balances", headers=api.headers()).status_code == 200
        r = api.client.get("/v1/balances", headers=api.headers())
        problem(r, 429, "rate-limited")
        assert int(r.headers["retry-after"]) > 0
        # Another token has its own bucket.
        assert api.client.get("/v1/balances", headers=api.headers(Role.VIEWER)).status_code == 200


def test_rate_limiter_memory_is_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=2, max_keys=100, clock=lambda: now[0])
    for i in range(1000):
        limiter.allow(f"k{i}")
    assert len(limiter) == 100
    assert limiter.allow("a") == 0 and limiter.allow("a") == 0
    assert limiter.allow("a") == pytest.approx(1.0)
    now[0] += 1.0
    assert limiter.allow("a") == 0


def test_requests_without_a_valid_token_are_limited_per_address(
    new_store: StoreFactory, tmp_path: Path
) -> None:
    now = [0.0]
    settings = ApiSettings(btc_network=Network.REGTEST, client_rate_per_second=1.0, client_burst=3)
    refused = "synod_api_client_rate_limited_total"
    for api in make_api(new_store, tmp_path, settings, limiter_clock=lambda: now[0]):
        before = REGISTRY.get_sample_value(refused) or 0.0
        unknown = {"Authorization": "Bearer synod_" + "x" * 43}
        # The burst: no token, an unknown one, another scheme; then the flood is refused.
        for headers in ({}, unknown, {"Authorization": "Basic c3lub2Q6eA=="}):
            problem(api.client.get("/v1/balances", headers=headers), 401, "unauthenticated")
        for _ in range(10):
            flood = api.client.get("/v1/balances", headers=unknown)
            problem(flood, 429, "rate-limited")
        assert flood.headers["retry-after"] == "1"
        problem(api.client.get("/openapi.json"), 429, "rate-limited")  # pages without a token too
        assert REGISTRY.get_sample_value(refused) == before + 11
        # A valid token from the same address is not limited by it, nor are the probes.
        assert api.client.get("/v1/balances", headers=api.headers(Role.VIEWER)).status_code == 200
        assert api.client.get("/healthz").status_code == 200
        assert api.client.get("/readyz").status_code == 200
        # Another address has its own bucket.
        with TestClient(api.client.app, client=("203.0.113.9", 4000)) as other:
            problem(other.get("/v1/balances", headers=unknown), 401, "unauthenticated")
        # A second later the address has one request again.
        now[0] += 1.0
        problem(api.client.get("/v1/balances", headers=unknown), 401, "unauthenticated")
        problem(api.client.get("/v1/balances", headers=unknown), 429, "rate-limited")


def test_client_addresses_tracked_are_bounded() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=64, clock=lambda: now[0])
    first = ipaddress.IPv4Address("10.0.0.0")
    for i in range(5000):
        assert limiter.allow(client_key(str(first + i))) == 0
    assert len(limiter) == 64
    # The most recent addresses are still tracked (spent), the oldest were forgotten (full).
    assert limiter.allow(client_key(str(first + 4999))) > 0
    assert limiter.allow(client_key(str(first))) == 0
    # An IPv6 /64 is one client: rotating addresses inside it buys no fresh bucket.
    assert limiter.allow(client_key("2001:db8:1:2::1")) == 0
    assert limiter.allow(client_key("2001:db8:1:2:ffff::9")) > 0
    assert limiter.allow(client_key("2001:db8:1:3::1")) == 0
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
    assert len(limiter) == 64


def test_calls_and_ledger_transactions_are_audited(api: Api) -> None:
    api.ledger.apply(DepositCredit("btc", "BTC", 500_000, f"{9:064x}:0", 1, "5120" + "cd" * 32))
    api.client.post("/v1/withdrawals", json=body(), headers=api.headers())
    api.client.get("/v1/withdrawals", headers=api.headers(Role.VIEWER))
    api.client.get("/v1/balances")  # unauthenticated: refused, not audited
    rows = [r.as_dict() for r in reversed(api.audit.tail(10))]
    actions = [(r["action"], r["detail"].get("kind") or r["detail"].get("path")) for r in rows]
    assert actions == [
        ("ledger_tx", "withdraw_request"),
        ("api_call", "/v1/withdrawals"),
        ("api_call", "/v1/withdrawals"),
    ]
    post = rows[1]
    assert post["actor"].startswith("token:") and post["detail"]["status"] == 201
    assert post["detail"]["client"] and post["detail"]["method"] == "POST"
    assert api.audit.verify().ok


def test_audit_chain_names_the_first_bad_row(open_db: Opener) -> None:
    db = open_db()
    audit = AuditLog(db)
    for i in range(5):
        audit.append("node-1", AuditAction.NODE_START if i % 2 else AuditAction.KEY_EVENT, {"i": i})
    good = audit.verify()
    assert good.ok and good.rows == 5 and good.head_hash == audit.tail(1)[0].hash
    with db.transaction():
        db.execute("UPDATE audit_log SET detail = ? WHERE seq = 3", ('{"i":30}',))
    bad = audit.verify()
    assert (bad.first_bad, bad.rows) == (3, 2) and "content" in bad.problem
    with db.transaction():
        db.execute("UPDATE audit_log SET detail = ? WHERE seq = 3", ('{"i":2}',))
    assert audit.verify().ok
    with db.transaction():
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    gone = audit.verify()
    assert gone.first_bad == 2 and "missing" in gone.problem
    db.close()


def test_metrics_health_and_openapi(api: Api) -> None:
    api.ledger.apply(DepositCredit("eth", "ETH", 10**18, "0xd", 1))
    api.client.post(
        "/v1/withdrawals",
        json=body(chain="eth", asset="ETH", destination=VALID["eth"]),
        headers=api.headers(),
    )
    problem(api.client.get("/metrics"), 401, "unauthenticated")
    text = api.client.get("/metrics", headers=api.headers(Role.VIEWER)).text
    assert 'synod_withdrawals{chain="eth",state="QUEUED"} 1.0' in text
    assert 'synod_ledger_transactions_applied_total{kind="withdraw_request"}' in text
    assert (
        'synod_api_request_seconds_count{method="POST",route="/v1/withdrawals",status="201"}'
        in text
    )
    for name in ("synod_signing_seconds", "synod_signing_sub_sessions", "synod_culprits"):
        assert name in text
    # A member's envelope drops and peer links are its own process's metrics (node --metrics-port).
    assert "synod_envelope_drops" not in text
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["consensus_paused"] is False
    doc = api.client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/withdrawals", "/v1/withdrawals/{withdrawal_id}/cancel", "/v1/balances"} <= set(
        doc["paths"]
    )
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    assert "swagger" in api.client.get("/docs").text.lower()
    wrong = api.client.delete("/v1/balances", headers=api.headers())
    assert wrong.status_code == 405 and wrong.json()["type"] == "urn:synod:problem:http-error"


def test_logs_are_json_and_never_hold_a_secret(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(node_id="node-7")
    structlog.get_logger("t").info("submitted", withdraw_id="w1", token="synod_secret", nonce=5)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["withdraw_id"] == "w1" and line["node_id"] == "node-7"
    assert line["token"] == "[redacted]" and line["nonce"] == "[redacted]"
    assert "synod_secret" not in json.dumps(line)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_docs_openapi_is_current() -> None:
    """docs/openapi.json is what `python -m synod.api.openapi docs/openapi.json` writes now."""
    from synod.api.openapi import render

    committed = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert committed.read_text(encoding="utf-8") == render(), "regenerate docs/openapi.json"
