"""`synod api run`'s token-free Prometheus listener: served on its own loopback port while the
API's `/metrics` wants a token, stopped with the API, refused on an address that is not
loopback unless asked, and a port that cannot be bound stops the start."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from synod.api.server import metrics_endpoint
from synod.cli.main import main
from synod.config import load_config
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger
from synod.state.transactions import DepositCredit, WithdrawRequest

from .addresses import VALID
from .server import api_server, free_port


def test_metrics_listener_serves_without_a_token_and_stops_with_the_api(tmp_path: Path) -> None:
    db = str(tmp_path / "ledger.db")
    store = SqliteDatabase(db)
    ledger = Ledger(store)
    ledger.apply(DepositCredit("sol", "SOL", 10**12, "sig-1", 5))
    ledger.apply(WithdrawRequest("m-1", "sol", "SOL", VALID["sol"], 5000, 1))
    store.close()
    port = free_port()
    scrape = f"http://127.0.0.1:{port}/metrics"
    with api_server(db, "--metrics-listen", f"127.0.0.1:{port}", log=tmp_path / "api.log") as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        served = httpx.get(scrape)
        assert served.status_code == 200
        assert 'synod_withdrawals{chain="sol",state="QUEUED"} 1.0' in served.text
        assert 'route="/metrics",status="401"' in served.text  # the API's own, same process
    with pytest.raises(httpx.TransportError):
        httpx.get(scrape, timeout=2)
    store = SqliteDatabase(db)
    rows = [r.as_dict() for r in AuditLog(store).tail(2)]
    store.close()
    assert rows[1]["action"] == "node_start" and rows[1]["detail"]["metrics"] == scrape
    assert rows[0]["action"] == "node_stop"  # the API unwound through the listener's stop


def test_metrics_listener_defaults_to_loopback_and_refuses_other_hosts() -> None:
    api = load_config().api
    assert metrics_endpoint(api.metrics_listen, api.metrics_allow_remote) == ("127.0.0.1", 9464)
    assert metrics_endpoint("[::1]:9100") == ("::1", 9100)
    assert metrics_endpoint("off") is None
    for remote in ("0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464", "metrics.example:9464"):
        with pytest.raises(ValueError, match="not a loopback address"):
            metrics_endpoint(remote)
    assert metrics_endpoint("0.0.0.0:9464", allow_remote=True) == ("0.0.0.0", 9464)
    with pytest.raises(ValueError, match="HOST:PORT"):
        metrics_endpoint("9464")


def test_api_run_refuses_a_metrics_listener_it_cannot_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "ledger.db")
    run = ["api", "run", "--db", db, "--port", str(free_port())]
    assert main([*run, "--metrics-listen", "0.0.0.0:9464"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    assert main([*run, "--metrics-listen", "127.0.0.1:70000"]) == 2
    assert "1..65535" in capsys.readouterr().err
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        assert main([*run, "--metrics-listen", busy]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen for metrics on {busy}" in err and err.count("\n") == 1
