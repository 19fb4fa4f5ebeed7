"""The dashboard in headless Chromium (Debian's chromium + chromium-driver, over WebDriver): it
renders real data read through a running API, and a screenshot is kept as a test artifact
(`SYNOD_TEST_ARTIFACTS`, default `test-artifacts/` at the repository root)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from synod.api.auth import Role, TokenStore
from synod.api.providers import GroupKey, Member, write_node_view
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Reserve,
    Signed,
    StartSign,
    WithdrawRequest,
)

from .addresses import VALID
from .server import api_server, free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _require_browser() -> None:
    if CHROMIUM and DRIVER:
        return
    if os.environ.get("SYNOD_REQUIRE_CHROMIUM") == "1":
        pytest.fail("SYNOD_REQUIRE_CHROMIUM=1 but chromium/chromedriver are not installed")
    pytest.skip(
        "chromium and chromium-driver not installed (apt-get install chromium chromium-driver)"
    )


@contextmanager
def webdriver() -> Iterator[tuple[httpx.Client, str]]:
    """A chromedriver process and one headless Chromium session: (client, session path)."""
    port = free_port()
    driver = subprocess.Popen(
        [str(DRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    profile = tempfile.mkdtemp(prefix="synod-chromium-")
    try:
        for _ in range(300):  # readiness of the driver, not timing
            try:
                if client.get("/status").json()["value"]["ready"]:
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1800",
            f"--user-data-dir={profile}",
        ]
        caps = {
            "capabilities": {
                "alwaysMatch": {"goog:chromeOptions": {"binary": str(CHROMIUM), "args": args}}
            }
        }
        session = client.post("/session", json=caps).json()["value"]["sessionId"]
        try:
            yield client, f"/session/{session}"
        finally:
            client.delete(f"/session/{session}")
    finally:
        client.close()
        driver.terminate()
        driver.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)


def _script(client: httpx.Client, session: str, script: str) -> Any:
    return client.post(f"{session}/execute/sync", json={"script": script, "args": []}).json()[
        "value"
    ]


def test_dashboard_renders_live_data_in_chromium(tmp_path: Path) -> None:
    _require_browser()
    db_path = str(tmp_path / "ledger.db")
    db = SqliteDatabase(db_path)
    ledger = Ledger(db)
    now = int(time.time() * 1000)
    ledger.apply(DepositCredit("btc", "BTC", 900_000, f"{1:064x}:0", 3, "5120" + "ab" * 32))
    ledger.apply(DepositCredit("sol", "SOL", 10**10, "sol-dep-1", 9))
    paid = ledger.apply(WithdrawRequest("dash-paid", "btc", "BTC", VALID["btc"], 120_000, now))
    wid = paid.result["withdraw_id"]
    for tx in (
        Reserve(wid),
        StartSign(wid, "session-one"),
        Signed(wid, "session-one", "sig"),
        Broadcast(wid, "cd" * 32),
        Confirm(wid, "cd" * 32, 12),
    ):
        ledger.apply(tx)
    ledger.apply(WithdrawRequest("dash-queued", "sol", "SOL", VALID["sol"], 5000, now + 1))
    admin, _ = TokenStore(db).create(Role.ADMIN, "dashboard")
    db.close()
    view = tmp_path / "node-view.json"
    members = [Member(i, f"node {i}", now, 1 if i == 5 else 0) for i in range(1, 6)]
    write_node_view(view, [GroupKey("bip340", "ab" * 32, {})], 3, members, {wid: [5]}, {})

    args = ("--btc-network", "regtest", "--node-view", str(view))
    with api_server(db_path, *args) as url, webdriver() as (client, s):
        client.post(f"{s}/url", json={"url": f"{url}/dashboard#token={admin}"})
        text = ""
        for _ in range(300):  # until the page has drawn the API's data
            loaded = _script(client, s, "return document.body.dataset.loaded === 'true';")
            text = _script(client, s, "return document.body.innerText;")
            if loaded and "dash-queued" in text and "api_call" in text:
                break
            time.sleep(0.1)
        rows = _script(
            client, s, "return document.querySelectorAll('#withdrawals tbody tr').length;"
        )
        balances = _script(client, s, "return document.querySelector('#balances tbody').innerText;")
        sessions = _script(client, s, "return document.querySelector('#sessions tbody').innerText;")
        committee = _script(client, s, "return document.querySelector('#committee').innerText;")
        shot = client.get(f"{s}/screenshot").json()["value"]
        # The token left the address bar as soon as the page read it.
        assert "token=" not in _script(client, s, "return location.href;")

    artifacts = Path(os.environ.get("SYNOD_TEST_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    png = base64.b64decode(shot)
    (artifacts / "dashboard.png").write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert rows == 2
    assert "dash-paid" in text and "CONFIRMED" in text and "QUEUED 1" in text
    assert "btc\tBTC\t900000" in balances and "yes" in balances
    assert "session-one" in sessions and "signed" in sessions and "5" in sessions
    assert "threshold 3 of 5 members" in text and "node 5\t" in committee
    assert "/v1/balances" in text  # the audit tail shows the page's own reads
