"""The HTTP clients and the adapter's Esplora path, against a small in-process fake server
(the JSON-RPC path runs against a real btcd in test_btcd.py)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from synod.chains.bitcoin.adapter import BitcoinAdapter
from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
from synod.chains.bitcoin.rpc import (
    BitcoinRpc,
    EsploraClient,
    EsploraError,
    RpcError,
    TransportError,
)
from synod.chains.bitcoin.tx import Transaction, encode_signature_ref
from synod.state.fees import FeeSchedule
from synod.state.machine import SIGNED, Withdrawal, canonical_template
from tests.chains.bitcoin.conftest import FrostGroup
from tests.chains.bitcoin.kernel import kernel_txid
from tests.fixtures import withdrawal as withdrawal_record

NET = Network.REGTEST


@dataclass
class FakeChain:
    """Just enough of an Esplora server; `refuse` makes POST /tx answer 400 with that text."""

    tip: int = 100
    mempool: dict[str, str] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)
    spends: dict[str, dict[str, Any]] = field(default_factory=dict)
    refuse: str = ""
    delay: float = 0.0
    rpc_replies: list[tuple[int, bytes]] = field(default_factory=list)


def _handler(chain: FakeChain) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: str | bytes, kind: str = "text/plain") -> None:
            data = body.encode() if isinstance(body, str) else body
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out first (on purpose, in one test)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
            time.sleep(chain.delay)
            if self.path == "/rpc":  # canned JSON-RPC answers
                status, body = chain.rpc_replies.pop(0)
                return self._reply(status, body, "application/json")
            if chain.refuse:
                return self._reply(400, chain.refuse)
            try:
                txid = kernel_txid(bytes.fromhex(raw))
            except Exception:
                return self._reply(400, "TX decode failed")
            chain.mempool[txid] = raw
            return self._reply(200, txid)

        def do_GET(self) -> None:
            if self.path == "/blocks/tip/height":
                return self._reply(200, str(chain.tip))
            if self.path == "/boom":
                return self._reply(503, "overloaded")
            m = re.fullmatch(r"/tx/([0-9a-f]{64})/status", self.path)
            if m:
                txid = m.group(1)
                if txid in chain.confirmed:
                    height = chain.confirmed[txid]
                    body = {"confirmed": True, "block_height": height, "block_hash": "00" * 32}
                    return self._reply(200, json.dumps(body), "application/json")
                if txid in chain.mempool:
                    return self._reply(200, json.dumps({"confirmed": False}))
                return self._reply(404, "Transaction not found")
            m = re.fullmatch(r"/tx/([0-9a-f]{64})/outspend/(\d+)", self.path)
            if m:
                spend = chain.spends.get(f"{m.group(1)}:{m.group(2)}", {"spent": False})
                return self._reply(200, json.dumps(spend), "application/json")
            return self._reply(404, "not found")

    return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeChain, str]]:
    chain = FakeChain()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(chain))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield chain, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def one_input_withdrawal(g: FrostGroup, wid: str = "w-esplora") -> Withdrawal:
    script = p2tr_script(g.output_key).hex()
    fee = FeeSchedule().btc_fee(1, 1)
    to = p2tr_address(os.urandom(32), NET)
    template = {
        "withdraw_id": wid,
        "chain": "btc",
        "inputs": [[f"{os.urandom(32).hex()}:1", str(100_000 + fee), script]],
        "outputs": [{"to": to, "value": "100000"}],
        "fee": str(fee),
    }
    text = canonical_template(template)
    return withdrawal_record(
        withdraw_id=wid,
        request_id="r",
        to=to,
        amount=100_000,
        status=SIGNED,
        fee=fee,
        template_hash=hashlib.sha256(text).hexdigest(),
        template=text.decode(),
        session_id="s",
    )


def test_adapter_over_esplora(fake: tuple[FakeChain, str], frost_group: FrostGroup) -> None:
    chain, url = fake
    adapter = BitcoinAdapter(EsploraClient(url, timeout=5), NET)
    w = one_input_withdrawal(frost_group)
    ref = encode_signature_ref(frost_group.sign(h) for h in adapter.sighashes(w))
    w = replace(w, signature_ref=ref)
    tx: Transaction = adapter.transaction(w)

    assert adapter.status(w).confirmations == 0 and not adapter.status(w).rejected
    assert adapter.broadcast(w, ref) == tx.txid
    assert tx.txid in chain.mempool  # the fake's txid (from the bytes sent) agrees
    assert adapter.status(w).confirmations == 0

    chain.confirmed[tx.txid] = 98
    status = adapter.status(w)
    assert (status.confirmations, status.height, status.rejected) == (3, 98, False)


def test_esplora_refusal_and_conflict(fake: tuple[FakeChain, str], frost_group: FrostGroup) -> None:
    chain, url = fake
    adapter = BitcoinAdapter(EsploraClient(url, timeout=5), NET, rebroadcast=False)
    w = one_input_withdrawal(frost_group, "w-refused")
    ref = encode_signature_ref(frost_group.sign(h) for h in adapter.sighashes(w))
    w = replace(w, signature_ref=ref)
    chain.refuse = 'sendrawtransaction RPC error: {"code":-26,"message":"min relay fee not met"}'
    txid = adapter.broadcast(w, ref)
    status = adapter.status(w)
    assert status.rejected and "min relay fee not met" in status.reason

    # Another transaction, confirmed, spent our input: provably unspendable.
    outpoint = str(adapter.transaction(w).inputs[0].outpoint)
    chain.spends[outpoint] = {
        "spent": True,
        "txid": "ab" * 32,
        "vin": 0,
        "status": {"confirmed": True, "block_height": 99, "block_hash": "cd" * 32},
    }
    # One block deep (tip 100, spent at 99) could still be reorganised away: no proof yet.
    assert not adapter.status(w).unspendable_proof
    chain.tip = 104  # six blocks deep
    status = adapter.status(w)
    assert status.rejected and "ab" * 32 in status.unspendable_proof
    assert outpoint in status.unspendable_proof and status.spent_outpoints == (outpoint,)
    with pytest.raises(ValueError):
        BitcoinAdapter(EsploraClient(url, timeout=5), NET, conflict_depth=5)

    # Spent by our own transaction, or only in a mempool: no proof.
    chain.spends[outpoint] = {**chain.spends[outpoint], "txid": txid}
    assert not adapter.status(w).unspendable_proof
    chain.spends[outpoint] = {**chain.spends[outpoint], "txid": "ab" * 32, "status": {}}
    assert not adapter.status(w).unspendable_proof


@pytest.mark.parametrize("text", ["²", "٥", "1²", "１２"])
def test_esplora_tip_height_is_ascii_digits_only(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = EsploraClient("http://127.0.0.1:1", timeout=0.3)
    monkeypatch.setattr(client, "_request", lambda method, path: (200, text))
    with pytest.raises(TransportError, match="tip/height"):
        client.tip_height()


def test_esplora_client_errors(fake: tuple[FakeChain, str]) -> None:
    chain, url = fake
    client = EsploraClient(url, timeout=0.3)
    assert client.tip_height() == 100
    assert client.tx_status("00" * 32) is None
    with pytest.raises(EsploraError) as err:
        client._get_json("/nothing")
    assert err.value.status == 404
    with pytest.raises(TransportError, match="503"):
        client._get_json("/boom")
    chain.delay = 0.8  # longer than the client's timeout: the client gives up, naming why
    with pytest.raises(TransportError, match=r"(?i)timed out"):
        client.broadcast("00")
    with pytest.raises(ValueError):
        EsploraClient("ftp://example.invalid")


def test_rpc_client_errors(fake: tuple[FakeChain, str]) -> None:
    chain, url = fake
    rpc = BitcoinRpc(f"{url.replace('http://', 'http://u:secret@')}/rpc", timeout=2)
    assert "secret" not in repr(rpc) and "secret" not in rpc.url
    chain.rpc_replies += [
        (200, b'{"result": 7, "error": null, "id": 1}'),
        (500, b'{"result": null, "error": {"code": -26, "message": "bad-txns"}, "id": 2}'),
        (404, b'{"result": null, "error": {"code": -32601, "message": "Method not found"}}'),
        (401, b""),
        (200, b"<html>"),
        (500, b"{}"),
    ]
    assert rpc.get_block_count() == 7
    with pytest.raises(RpcError) as err:
        rpc.send_raw_transaction("00")
    assert (err.value.code, err.value.message) == (-26, "bad-txns")
    with pytest.raises(RpcError, match="-32601"):
        rpc.call("nosuchmethod")
    for _ in range(3):  # 401, not JSON, no result
        with pytest.raises(TransportError) as terr:
            rpc.call("getblockcount")
        assert "secret" not in str(terr.value)

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError):
        BitcoinRpc(f"http://127.0.0.1:{port}", "u", "p", timeout=2).get_block_count()
