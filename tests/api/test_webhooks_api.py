"""Webhook subscriptions through the API: roles, validation (nothing written on a 422), the
secret shown once and never listed, bounded logs, the audit trail (SQLite and PostgreSQL);
non-public destinations refused unless allowed; a signed delivery of a withdrawal submitted
through the API; and `synod api run` with its delivery loop, driven by `synod webhooks ...`,
to a real receiver on 127.0.0.1 (allowed in its configuration)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import synod.api.webhooks
from synod.api.auth import Role
from synod.api.views import MAX_PAGE
from synod.cli.main import main
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit

from ..runtime.test_webhooks import Receiver, receiver  # noqa: F401  (fixture)
from ..state.conftest import StoreFactory
from .addresses import VALID
from .conftest import Api, make_api
from .server import api_server
from .test_withdrawals import body, fund, problem

HOOK = {"url": "https://hooks.example.com/synod", "events": ["withdrawal.state_changed"]}


@pytest.fixture
def loopback_api(new_store: StoreFactory, tmp_path: Path) -> Iterator[Api]:
    """An API whose administrator allowed deliveries to 127.0.0.0/8."""
    yield from make_api(new_store, tmp_path, allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))


def check_signature(headers: dict[str, str], raw: bytes, secret: str) -> dict[str, Any]:
    """A receiver's check, with the standard library only: HMAC-SHA256 over "<t>." + body."""
    fields = dict(part.split("=", 1) for part in headers["Synod-Signature"].split(","))
    mac = hmac.new(secret.encode(), fields["t"].encode() + b"." + raw, hashlib.sha256)
    assert hmac.compare_digest(mac.hexdigest(), fields["v1"])
    assert abs(int(fields["t"]) - time.time()) <= 300
    event: dict[str, Any] = json.loads(raw)
    return event


def test_roles_secret_once_and_audit(api: Api) -> None:
    for role in (Role.VIEWER, Role.OPERATOR):
        problem(
            api.client.post("/v1/webhooks", json=HOOK, headers=api.headers(role)), 403, "forbidden"
        )
    problem(api.client.post("/v1/webhooks", json=HOOK), 401, "unauthenticated")
    assert api.webhooks.list() == []

    created = api.client.post("/v1/webhooks", json=HOOK, headers=api.headers(Role.ADMIN))
    assert created.status_code == 201, created.text
    sub = created.json()
    secret = sub.pop("secret")
    assert len(secret) == 64 and sub["active"] and sub["events"] == HOOK["events"]
    assert sub["url"] == HOOK["url"] and sub["id"].startswith("sub_")

    for role in Role:  # every reader lists it, nobody sees the secret again
        listed = api.client.get("/v1/webhooks", headers=api.headers(role))
        assert listed.status_code == 200 and listed.json() == {"items": [sub]}
        assert secret not in listed.text
        for log in ("deliveries", "attempts"):
            r = api.client.get(f"/v1/webhooks/{sub['id']}/{log}", headers=api.headers(role))
            assert r.status_code == 200 and r.json() == {"items": []}

    problem(
        api.client.delete(f"/v1/webhooks/{sub['id']}", headers=api.headers(Role.OPERATOR)),
        403,
        "forbidden",
    )
    for unknown in ("sub_nope", "x" * 500):
        path = f"/v1/webhooks/{unknown}"
        problem(api.client.delete(path, headers=api.headers(Role.ADMIN)), 404, "not-found")
        problem(api.client.get(path + "/deliveries", headers=api.headers()), 404, "not-found")
    for limit in (0, MAX_PAGE + 1, -1):
        r = api.client.get(
            f"/v1/webhooks/{sub['id']}/attempts", params={"limit": limit}, headers=api.headers()
        )
        problem(r, 422, "validation-error", "query.limit")

    for _ in range(2):  # deleting again answers the same
        gone = api.client.delete(f"/v1/webhooks/{sub['id']}", headers=api.headers(Role.ADMIN))
        assert gone.status_code == 200 and gone.json() == {**sub, "active": False}

    rows = [r.as_dict() for r in api.audit.tail(200)]
    creation = [r for r in rows if r["detail"].get("subscription") == sub["id"]]
    assert len(creation) == 1 and creation[0]["detail"]["status"] == 201
    assert creation[0]["actor"].startswith("token:") and creation[0]["detail"]["role"] == "admin"
    paths = [(r["detail"].get("method"), r["detail"].get("status")) for r in rows]
    assert paths.count(("POST", 403)) == 2 and paths.count(("DELETE", 404)) == 2
    assert paths.count(("DELETE", 200)) == 2
    dump = json.dumps(api.ledger.db.query("SELECT * FROM audit_log"))
    assert secret not in dump


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"url": "ftp://hooks.example.com/x"}, "body.url"),
        ({"url": "javascript:alert(1)"}, "body.url"),
        ({"url": "https:///no-host"}, "body.url"),
        ({"url": "https://user:pw@hooks.example.com/"}, "body.url"),
        ({"url": "https://hooks.example.com/a b"}, "body.url"),
        ({"url": "https://hooks.example.com:99999/"}, "body.url"),
        ({"url": "https://hooks.example.com/" + "a" * 2048}, "body.url"),
        ({"url": 7}, "body.url"),
        ({"events": []}, "body.events"),
        ({"events": ["withdrawal.everything"]}, "body.events.0"),
        ({"secret": "chosen-by-the-client-0123"}, "body.secret"),
    ],
)
def test_invalid_subscriptions_write_nothing(api: Api, over: dict[str, Any], field: str) -> None:
    r = api.client.post("/v1/webhooks", json={**HOOK, **over}, headers=api.headers(Role.ADMIN))
    problem(r, 422, "validation-error", field)
    assert api.ledger.db.query("SELECT count(*) FROM webhook_subscriptions") == [(0,)]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost:8080/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fd12:3456::1]/hook", "private"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ],
)
def test_non_public_destinations_are_refused(api: Api, url: str, reason: str) -> None:
    r = api.client.post("/v1/webhooks", json={**HOOK, "url": url}, headers=api.headers(Role.ADMIN))
    p = problem(r, 422, "validation-error", "body.url")
    assert f"refused ({reason})" in p["detail"] and "webhooks.allowNetworks" in p["detail"]
    assert api.ledger.db.query("SELECT count(*) FROM webhook_subscriptions") == [(0,)]


def test_an_allowed_network_is_accepted(loopback_api: Api) -> None:
    admin = loopback_api.headers(Role.ADMIN)
    ok = loopback_api.client.post(
        "/v1/webhooks", json={**HOOK, "url": "http://127.0.0.1:8080/hook"}, headers=admin
    )
    assert ok.status_code == 201, ok.text
    still = loopback_api.client.post(
        "/v1/webhooks", json={**HOOK, "url": "http://10.0.0.5/hook"}, headers=admin
    )
    problem(still, 422, "validation-error", "body.url")  # only the network allowed


def test_active_subscriptions_are_bounded(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synod.api.webhooks, "MAX_SUBSCRIPTIONS", 2)
    admin = api.headers(Role.ADMIN)
    made = [api.client.post("/v1/webhooks", json=HOOK, headers=admin) for _ in range(2)]
    assert [r.status_code for r in made] == [201, 201]
    problem(api.client.post("/v1/webhooks", json=HOOK, headers=admin), 409, "limit-reached")
    assert len(api.webhooks.list()) == 2
    api.client.delete(f"/v1/webhooks/{made[0].json()['id']}", headers=admin)
    assert api.client.post("/v1/webhooks", json=HOOK, headers=admin).status_code == 201
    statuses = [r.as_dict()["detail"]["status"] for r in reversed(api.audit.tail(5))]
    assert statuses == [201, 201, 409, 200, 201]  # the refusal is audited too


def test_a_withdrawal_through_the_api_is_delivered_signed(
    loopback_api: Api,
    receiver: Receiver,  # noqa: F811
) -> None:
    api = loopback_api
    fund(api)
    hook = {"url": receiver.url, "events": ["withdrawal.state_changed"]}
    created = api.client.post("/v1/webhooks", json=hook, headers=api.headers(Role.ADMIN)).json()
    w = api.client.post("/v1/withdrawals", json=body(), headers=api.headers()).json()
    receiver.script = [503]  # the first attempt fails: the delivery stays pending
    assert api.webhooks.step() == 0
    [pending] = api.client.get(
        f"/v1/webhooks/{created['id']}/deliveries", headers=api.headers(Role.VIEWER)
    ).json()["items"]
    assert pending["status"] == "pending" and pending["attempts"] == 1
    assert (
        pending["last_error"] == "HTTP 503" and pending["event"]["data"]["withdraw_id"] == w["id"]
    )
    with api.ledger.db.transaction():  # due now rather than after the backoff
        api.ledger.db.execute("UPDATE webhook_outbox SET next_at = 0")
    assert api.webhooks.step() == 1

    assert len(receiver.received) == 2
    headers, raw = receiver.received[-1]
    event = check_signature(headers, raw, created["secret"])
    assert event["type"] == headers["Synod-Event"] == "withdrawal.state_changed"
    assert event["data"] == {"withdraw_id": w["id"], "state": "QUEUED", "request_id": "payout-1"}
    assert event["id"] == pending["event_id"]
    with pytest.raises(AssertionError):
        check_signature(headers, raw, created["secret"][::-1])
    attempts = api.client.get(
        f"/v1/webhooks/{created['id']}/attempts", params={"limit": 1}, headers=api.headers()
    ).json()["items"]
    assert [(a["attempt"], a["status_code"], a["error"]) for a in attempts] == [(2, 200, None)]
    [done] = api.client.get(
        f"/v1/webhooks/{created['id']}/deliveries", headers=api.headers()
    ).json()["items"]
    assert done["status"] == "delivered" and done["attempts"] == 2


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_api_run_delivers_and_the_cli_manages_subscriptions(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,  # noqa: F811
) -> None:
    db = str(tmp_path / "ledger.db")
    code, out, _ = cli(capsys, "api", "token", "create", "--role", "admin", "--db", db)
    admin = out.strip()
    code, out, _ = cli(capsys, "api", "token", "create", "--role", "viewer", "--db", db)
    viewer = out.strip()
    ledger_db = SqliteDatabase(db)
    Ledger(ledger_db).apply(DepositCredit("sol", "SOL", 10**12, "sig-1", 5))
    ledger_db.close()
    receiver.script = [500]  # one failure, then a retry after the configured backoff
    monkeypatch.setenv("SYNOD__WEBHOOKS__ALLOWNETWORKS", '["127.0.0.0/8"]')  # the receiver's

    with api_server(db, "--btc-network", "regtest", log=tmp_path / "api.log") as url:
        monkeypatch.setenv("SYNOD_API_URL", url)
        monkeypatch.setenv("SYNOD_API_TOKEN", admin)
        code, out, _ = cli(
            capsys,
            "webhooks",
            "create",
            receiver.url,
            "--event",
            "withdrawal.state_changed",
            "--json",
        )
        assert code == 0
        sub = json.loads(out)
        secret = sub["secret"]
        code, _, err = cli(capsys, "webhooks", "create", "ftp://x/", "--event", "deposit.credited")
        assert code == 2 and "webhook URL" in err and err.count("\n") == 1
        with pytest.raises(SystemExit) as bad_kind:
            cli(capsys, "webhooks", "create", receiver.url, "--event", "everything")
        assert bad_kind.value.code == 2

        code, out, _ = cli(
            capsys,
            *("withdraw", "create", "--chain", "sol", "--asset", "SOL", "--to", VALID["sol"]),
            *("--amount", "5000", "--external-id", "hook-1", "--json"),
        )
        assert code == 0
        wid = json.loads(out)["id"]
        for _ in range(1200):  # the loop in `synod api run` delivers (bounded wait, no timing)
            if len(receiver.received) >= 2:
                break
            time.sleep(0.1)
        assert len(receiver.received) == 2
        for headers, raw in receiver.received:  # the failed attempt and its retry: same event
            event = check_signature(headers, raw, secret)
            assert event["data"]["withdraw_id"] == wid and event["data"]["state"] == "QUEUED"

        code, out, _ = cli(capsys, "webhooks", "deliveries", sub["id"], "--attempts", "--json")
        log = json.loads(out)["items"]
        assert code == 0 and [(a["attempt"], a["status_code"]) for a in log] == [(2, 200), (1, 500)]
        code, out, _ = cli(capsys, "webhooks", "deliveries", sub["id"])
        assert code == 0 and "delivered" in out and "attempts=2" in out
        code, _, err = cli(capsys, "webhooks", "deliveries", sub["id"], "--limit", "0")
        assert code == 2 and "limit" in err

        monkeypatch.setenv("SYNOD_API_TOKEN", viewer)
        code, out, _ = cli(capsys, "webhooks", "list")
        assert code == 0 and sub["id"] in out and "active" in out and secret not in out
        code, _, err = cli(capsys, "webhooks", "delete", sub["id"])
        assert code == 2 and "403" in err
        monkeypatch.setenv("SYNOD_API_TOKEN", admin)
        code, out, _ = cli(capsys, "webhooks", "delete", sub["id"], "--json")
        assert code == 0 and json.loads(out)["active"] is False
        code, _, err = cli(capsys, "webhooks", "delete", "sub_unknown")
        assert code == 2 and "404" in err
        assert secret not in (tmp_path / "api.log").read_text()

    # The server stopped cleanly: the delivery loop was joined before the stop row was written.
    store = SqliteDatabase(db)
    tail = AuditLog(store).tail(1)[0].as_dict()
    rows = json.dumps(store.query("SELECT * FROM webhook_subscriptions"))
    store.close()
    assert tail["action"] == "node_stop"
    # The secret is sealed in the store, under a key in a private file beside it.
    assert secret not in rows and sub["id"] in rows
    assert stat.S_IMODE(Path(db + ".webhook-key").stat().st_mode) == 0o600
