"""`EvmAdapter` over JSON-RPC: a stub node on 127.0.0.1 answers the four `eth_*` methods the
adapter uses by forwarding them to eth-tester (a real EVM), so the HTTP path is exercised
end to end. The transactions here are signed by a TEST-ONLY key, not by the committee."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from eth_account import Account
from eth_tester.exceptions import TransactionNotFound

from synod.chains.evm.adapter import EvmAdapter, JsonRpcError
from synod.state.machine import Withdrawal
from tests.fixtures import withdrawal as withdrawal_record

from .conftest import GWEI, Evm, random_address

TEST_KEY = (1).to_bytes(32, "big")  # eth-tester's first funded account


def serve(evm: Evm) -> ThreadingHTTPServer:
    def handle(method: str, params: list[Any]) -> Any:
        t = evm.tester
        if method == "eth_sendRawTransaction":
            return t.send_raw_transaction(params[0])
        if method == "eth_blockNumber":
            return hex(t.get_block_by_number("latest")["number"])
        try:
            if method == "eth_getTransactionByHash":
                return {"hash": t.get_transaction_by_hash(params[0])["hash"]}
            r = t.get_transaction_receipt(params[0])
        except TransactionNotFound:
            return None
        return {"blockNumber": hex(r["block_number"]), "status": hex(r["status"])}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
            try:
                reply["result"] = handle(request["method"], request["params"])
            except Exception as err:  # a node answers errors, it does not hang up
                reply["error"] = {"code": -32000, "message": str(err)}
            body = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def node(evm: Evm) -> Iterator[str]:
    server = serve(evm)
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def signed(evm: Evm, nonce: int, to: str, value: int) -> bytes:
    tx = {"chainId": evm.chain_id, "nonce": nonce, "gas": 21_000, "gasPrice": 2 * GWEI}
    tx |= {"to": to, "value": value}
    return bytes(Account.sign_transaction(tx, TEST_KEY).raw_transaction)


def withdrawal(txid: str | None = None) -> Withdrawal:
    return withdrawal_record(
        withdraw_id="w",
        request_id="r",
        chain="eth",
        asset="ETH",
        to="0x",
        amount=1,
        status="SIGNED",
        fee=None,
        template_hash=None,
        template=None,
        session_id="s",
        signature_ref="sig",
        txid=txid,
    )


def test_broadcast_and_confirmations_over_json_rpc(evm: Evm, node: str) -> None:
    to = random_address()
    raw = signed(evm, 0, to, 777)
    sender = bytes.fromhex(Account.from_key(TEST_KEY).address[2:])
    adapter = EvmAdapter("eth", node, lambda w, ref: raw, sender)
    txid = adapter.broadcast(withdrawal(), "sig")
    assert adapter.broadcast(withdrawal(), "sig") == txid  # known: not sent again
    assert evm.balance(to) == 777
    assert adapter.status(withdrawal(txid)).confirmations == 1
    evm.tester.mine_blocks(4)
    status = adapter.status(withdrawal(txid))
    assert (
        status.confirmations == 5
        and status.height == evm.tester.get_block_by_number("latest")["number"] - 4
    )
    assert adapter.status(withdrawal("0x" + "11" * 32)).confirmations == 0


def test_node_error_surfaces(evm: Evm, node: str) -> None:
    raw = signed(evm, 5, random_address(), 1)  # nonce gap: eth-tester refuses it
    adapter = EvmAdapter("eth", node, lambda w, ref: raw)
    with pytest.raises(JsonRpcError):
        adapter.broadcast(withdrawal(), "sig")
