"""The submitting side: sign ledger transactions as a member (or operator) and hand them to a
CometBFT node's RPC; read what the chain decided.

`ReplicatedConsensus.submit` has the shape of `SoloOrderer.submit` (both are a `Consensus`, an
orderer in front of `LedgerApp`): the solo one finalizes a block at once and returns the
receipt, the replicated one returns None once the node's mempool accepted the transaction (the
receipt comes with the block), and raises the refusal `CheckTx` gave. Only loopback or
configured node URLs are dialled; answers are bounded.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.consensus.app import Code
from synod.consensus.signed import SignedTx, Unauthorized
from synod.state import errors as E
from synod.state.machine import Receipt
from synod.state.transactions import Tx

MAX_RESPONSE = 16 << 20


class Consensus(Protocol):
    """An orderer in front of `LedgerApp`: `SoloOrderer` or `ReplicatedConsensus`."""

    def submit(self, tx: Tx) -> Receipt | None: ...


class RpcError(ConnectionError):
    """The node did not answer, or answered with a JSON-RPC error."""


@dataclass(frozen=True)
class Status:
    height: int
    app_hash: str
    catching_up: bool


class CometRpc:
    """CometBFT's JSON-RPC over HTTP (POST, one call per request)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def call(self, method: str, **params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        req = urllib.request.Request(self.url, body.encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read(MAX_RESPONSE + 1)
        except (urllib.error.URLError, OSError) as err:
            raise RpcError(f"{self.url} {method}: {err}") from None
        if len(raw) > MAX_RESPONSE:
            raise RpcError(f"{self.url} {method}: answer larger than {MAX_RESPONSE} bytes")
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RpcError(f"{self.url} {method}: not JSON") from None
        if not isinstance(answer, dict) or "error" in answer:
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise RpcError(f"{self.url} {method}: {error}")
        return answer.get("result")

    def status(self) -> Status:
        info = self.call("status")["sync_info"]
        return Status(
            int(info["latest_block_height"]), info["latest_app_hash"], bool(info["catching_up"])
        )

    def broadcast_tx_sync(self, raw: bytes) -> tuple[int, str, bytes]:
        """(CheckTx code, log, data): the application's answer to the transaction."""
        r = self.call("broadcast_tx_sync", tx=base64.b64encode(raw).decode())
        try:  # CometBFT writes these bytes as hex (HexBytes)
            data = bytes.fromhex(str(r.get("data") or ""))
        except ValueError:
            data = b""
        return int(r["code"]), str(r.get("log", "")), data

    def query(self, path: str, data: bytes = b"") -> Any:
        """An application query (`synod.consensus.abci.server` paths), decoded from JSON."""
        r = self.call("abci_query", path=path, data=data.hex())["response"]
        if int(r.get("code", 0)):
            raise KeyError(r.get("log", path))
        value = base64.b64decode(r.get("value") or "")
        return json.loads(value) if path != "/digest" else value.decode()

    def header_app_hash(self, height: int) -> str:
        """The app hash agreed in block `height`'s header (the state after `height - 1`)."""
        return str(self.call("block", height=str(height))["block"]["header"]["app_hash"])


class ReplicatedConsensus:
    """Signs each transaction with this submitter's key and broadcasts it to its node."""

    def __init__(self, rpc: CometRpc, signer: str, key: Ed25519PrivateKey, chain_id: str) -> None:
        self.rpc, self.signer, self._key, self.chain_id = rpc, signer, key, chain_id

    def signed(self, tx: Tx) -> SignedTx:
        return SignedTx.sign(tx, self.signer, self._key, self.chain_id)

    def submit(self, tx: Tx) -> Receipt | None:
        """Into the mempool (None), or the refusal: `Unauthorized` / `MalformedTransaction` /
        `Rejected`. Already applied is not an error: the write-back is idempotent."""
        try:
            code, log, data = self.rpc.broadcast_tx_sync(self.signed(tx).encode())
        except RpcError as err:
            if "already exists in cache" in str(err):
                return None  # these very bytes were submitted before
            raise
        if code in (Code.OK, Code.DUPLICATE):
            return None
        if code == Code.UNAUTHORIZED:
            raise Unauthorized(log)
        if code == Code.MALFORMED:
            raise E.MalformedTransaction(log)
        try:
            reason = json.loads(data).get("rejected") if data else None
        except (ValueError, AttributeError):
            reason = None
        if isinstance(reason, str):  # the state machine's own refusal, as its exception
            raise E.rejection(reason, log)
        raise E.Rejected(log or f"refused with code {code}")
