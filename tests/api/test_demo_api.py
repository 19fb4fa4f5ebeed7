"""`synod demo` with the REST API: the withdrawals go through the API (their submissions are in
the audit trail as API calls), the dashboard URL answers, and the run still pays every one."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from synod.demo.pipeline import DemoApi, DemoReport, run_demo
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase


def test_demo_submits_through_the_api(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def hold(report: DemoReport, dashboard: str) -> None:
        base, _, fragment = dashboard.partition("/dashboard#token=")
        headers = {"Authorization": f"Bearer {fragment}"}
        seen["page"] = httpx.get(f"{base}/dashboard").status_code
        seen["listed"] = httpx.get(f"{base}/v1/withdrawals", headers=headers).json()["items"]
        seen["committee"] = httpx.get(f"{base}/v1/committee", headers=headers).json()
        seen["keys"] = httpx.get(f"{base}/v1/keys", headers=headers).json()["items"]

    report = run_demo(tmp_path, per_chain=1, chains=("sol",), api=DemoApi(hold=hold))
    assert report.all_confirmed and len(report.rows) == 1
    assert seen["page"] == 200
    listed = seen["listed"]
    assert isinstance(listed, list) and [w["state"] for w in listed] == ["CONFIRMED"]
    # The committee as the demo's nodes published it: 3-of-5, culprits counted per member.
    committee = seen["committee"]
    assert isinstance(committee, dict) and committee["threshold"] == 3
    counts = {m["member_id"]: m["culprit_count"] for m in committee["members"]}
    assert sorted(counts) == [1, 2, 3, 4, 5] and counts[4] == 0  # silence is never blamed
    assert all(counts[c] >= 1 for c in listed[0]["culprits"])
    assert set(listed[0]["culprits"]) <= {5} and report.rows[0]["culprits"] == listed[0]["culprits"]
    keys = seen["keys"]
    assert isinstance(keys, list) and keys[0]["scheme"] == "ed25519" and keys[0]["addresses"]["sol"]

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
