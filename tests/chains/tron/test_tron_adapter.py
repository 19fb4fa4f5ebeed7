"""The TRON adapter against a stub java-tron HTTP API on 127.0.0.1 (no TRON engine runs here):
request shapes, broadcast of the signed bytes, confirmations and expiry."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from synod.chains.tron.adapter import TronAdapter, TronHttpClient
from synod.state.machine import Withdrawal, canonical_template
from tests.fixtures import withdrawal as withdrawal_record

NODE: dict[str, Any] = {
    "number": 1000,
    "timestamp": 1_800_000_000_000,
    "broadcast": [],
    "included": {},
}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        if self.path == "/wallet/getnowblock":
            block_id = NODE["number"].to_bytes(8, "big") + bytes(range(24))
            out: Any = {
                "blockID": block_id.hex(),
                "block_header": {
                    "raw_data": {"number": NODE["number"], "timestamp": NODE["timestamp"]}
                },
            }
        elif self.path == "/wallet/broadcasthex":
            NODE["broadcast"].append(body["transaction"])
            out = {"result": True}
        elif self.path == "/wallet/gettransactioninfobyid":
            out = NODE["included"].get(body["value"], {})
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def node() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def withdrawal(txid: str | None = None, asset: str = "TRX", **changes: str) -> Withdrawal:
    """A reserved TRON withdrawal with its template, as the ledger records it."""
    template = {
        "withdraw_id": "w1",
        "chain": "trx",
        "asset": asset,
        "to": "TPETNZhCFky15fMJhDxu86tw9XsdkdsAT7",
        "amount": "1000000",
        "fee": "30000000",
        "fee_asset": "TRX",
        "lots": [["lot-1", asset, "1000000"]],
    }
    text = canonical_template(template).decode()
    template |= changes  # a template changed after its hash was recorded
    return withdrawal_record(
        chain="trx",
        asset=asset,
        to=template["to"],
        amount=1_000_000,
        status="SIGNED",
        fee=30_000_000,
        template=canonical_template(template).decode(),
        template_hash=hashlib.sha256(text.encode()).hexdigest(),
        session_id="s",
        signature_ref="sig",
        txid=txid,
    )


def test_prepare_broadcast_and_confirm(node: str) -> None:
    adapter = TronAdapter(
        TronHttpClient(node), "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", confirmations=19
    )
    txid = adapter.prepare(withdrawal())
    assert len(txid) == 32
    sent = adapter.broadcast(withdrawal(), (b"\x01" * 64 + b"\x00").hex())
    assert sent == txid.hex() and NODE["broadcast"]
    assert adapter.status(withdrawal(sent)).confirmations == 0
    NODE["included"][sent] = {"id": sent, "blockNumber": 1001, "receipt": {"result": "SUCCESS"}}
    NODE["number"] = 1019
    status = adapter.status(withdrawal(sent))
    assert status.confirmations == 19 and status.height == 1001


def test_expired_transaction_is_provably_unspendable(node: str) -> None:
    NODE["included"].clear()
    adapter = TronAdapter(TronHttpClient(node), "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")
    adapter.prepare(withdrawal())
    NODE["timestamp"] += 11 * 60 * 1000
    status = adapter.status(withdrawal("ab" * 32))
    assert status.rejected and status.unspendable_proof


def test_transaction_comes_from_the_checked_template(node: str) -> None:
    """TRC-20: the fee limit is the fee the ledger reserved; a template edited after its hash
    was fixed, or a token the adapter does not know, is refused before anything is signed."""
    usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    adapter = TronAdapter(
        TronHttpClient(node), "TPETNZhCFky15fMJhDxu86tw9XsdkdsAT7", {"USDT": usdt}
    )
    adapter.prepare(withdrawal(asset="USDT"))
    fee_limit_field = bytes([0x90, 0x01, 0x80, 0x87, 0xA7, 0x0E])  # field 18 = 30,000,000
    assert adapter._prepared["w1"].tx.raw.endswith(fee_limit_field)
    with pytest.raises(ValueError, match="does not match its hash"):
        adapter.prepare(withdrawal(asset="USDT", amount="9000000"))
    with pytest.raises(ValueError, match="unknown token"):
        adapter.prepare(withdrawal(asset="BTT"))
