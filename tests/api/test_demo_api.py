"""`synod demo` with the REST API: the withdrawals go through the API (their submissions are in
the audit trail as API calls), the dashboard URL answers, and the run still pays every one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from synod.demo import DemoApi, DemoReport, run_demo
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase


def test_demo_submits_through_the_api(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def hold(report: DemoReport, dashboard: str) -> None:
        base, _, fragment = dashboard.partition("/dashboard#token=")
        headers = {"Authorization": f"Bearer {fragment}"}
        seen["page"] = httpx.get(f"{base}/dashboard").status_code
        seen["listed"] = httpx.get(f"{base}/v1/withdrawals", headers=headers).json()["items"]

    report = run_demo(tmp_path, per_chain=1, chains=("sol",), api=DemoApi(hold=hold))
    assert report.all_confirmed and len(report.rows) == 1
    assert seen["page"] == 200
    listed = seen["listed"]
    assert isinstance(listed, list) and [w["state"] for w in listed] == ["CONFIRMED"]

    db = SqliteDatabase(tmp_path / "ledger.db")
    rows = [r.as_dict() for r in reversed(AuditLog(db).tail(200))]
    assert AuditLog(db).verify().ok
    db.close()
    posts = [
        r
        for r in rows
        if r["action"] == "api_call"
        and r["detail"]["method"] == "POST"
        and r["detail"]["path"] == "/v1/withdrawals"
    ]
    assert [p["detail"]["status"] for p in posts] == [201]
    kinds = [r["detail"]["kind"] for r in rows if r["action"] == "ledger_tx"]
    assert {"withdraw_request", "reserve", "signed", "confirm"} <= set(kinds)
    log = [json.loads(x) for x in (tmp_path / "api.log").read_text().splitlines() if x]
    assert any(x.get("event") == "withdrawal submitted" for x in log)
