"""TRON node adapter over java-tron's HTTP API (`/wallet/...`).

No TRON engine runs locally here (java-tron is a full JVM node with its own
network); this adapter talks to a node you point it at. Transactions are built
offline (`synod.chains.tron.tx`) and checked in tests against mainnet bytes and
by recovering the signer.

Template binding: the transaction is built from the reserved template, checked
against its hash (recipient, asset, amount, and for TRC-20 the fee limit, which is
the fee the ledger reserved); the owner is the group address the adapter is made
for. The reference block is chosen when signing starts and is part of the signed id.
Signers accept a reference block only if their own node knows it and it is recent;
a transaction whose expiration passed can never be included, which is the proof
that lets the state machine re-queue the withdrawal with a new one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from synod.chains.tron.tx import RefBlock, TronTransaction, trc20_transfer, trx_transfer
from synod.runtime.interfaces import ChainStatus
from synod.state.machine import Withdrawal, recorded_template

EXPIRATION_MS = 10 * 60 * 1000  # java-tron accepts at most 24 h; ten minutes bounds a retry


class TronNodeError(RuntimeError):
    pass


class TronHttpClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body or {}).encode()
        req = urllib.request.Request(
            f"{self.url}/{path.lstrip('/')}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                out: dict[str, Any] = json.loads(resp.read() or b"{}")
                return out
        except (urllib.error.URLError, TimeoutError, ValueError) as err:
            raise TronNodeError(f"{path}: {err}") from None

    def now_block(self) -> tuple[RefBlock, int]:
        """The latest block as a reference block, and its timestamp (ms)."""
        block = self.call("wallet/getnowblock")
        header = block["block_header"]["raw_data"]
        return RefBlock(int(header["number"]), bytes.fromhex(block["blockID"])), int(
            header["timestamp"]
        )

    def broadcast_hex(self, signed: bytes) -> dict[str, Any]:
        return self.call("wallet/broadcasthex", {"transaction": signed.hex()})

    def transaction_info(self, txid: str) -> dict[str, Any]:
        return self.call("wallet/gettransactioninfobyid", {"value": txid})


@dataclass(frozen=True)
class Prepared:
    tx: TronTransaction
    expiration_ms: int


class TronAdapter:
    chain = "trx"

    def __init__(
        self,
        client: TronHttpClient,
        owner: str,
        tokens: dict[str, str] | None = None,
        confirmations: int = 19,
    ) -> None:
        self.client = client
        self.owner = owner
        self.tokens = tokens or {}  # TRC-20 symbol -> contract address
        self.confirmations = confirmations
        self._prepared: dict[str, Prepared] = {}

    def prepare(self, w: Withdrawal) -> bytes:
        """Build the transaction on a fresh reference block; returns the id the signers sign."""
        template = recorded_template(w)
        to, asset, amount = template["to"], template["asset"], int(template["amount"])
        if asset != "TRX" and asset not in self.tokens:
            raise ValueError(f"{w.withdraw_id}: unknown token {asset!r}")
        ref, now_ms = self.client.now_block()
        expiration = now_ms + EXPIRATION_MS
        if asset == "TRX":
            tx = trx_transfer(self.owner, to, amount, ref, expiration, now_ms)
        else:
            fee_limit = int(template["fee"])  # energy may burn up to what the ledger reserved
            tx = trc20_transfer(
                self.owner, self.tokens[asset], to, amount, ref, expiration, now_ms, fee_limit
            )
        self._prepared[w.withdraw_id] = Prepared(tx, expiration)
        return tx.txid

    def broadcast(self, w: Withdrawal, signature_ref: str) -> str:
        prepared = self._prepared[w.withdraw_id]
        result = self.client.broadcast_hex(prepared.tx.attach(bytes.fromhex(signature_ref)))
        if not result.get("result"):
            raise TronNodeError(f"broadcast refused: {result.get('code')} {result.get('message')}")
        return prepared.tx.txid.hex()

    def status(self, w: Withdrawal) -> ChainStatus:
        info = self.client.transaction_info(w.txid or "")
        if not info:
            prepared = self._prepared.get(w.withdraw_id)
            _, now_ms = self.client.now_block()
            if prepared is not None and now_ms > prepared.expiration_ms:
                return ChainStatus(
                    0,
                    rejected=True,
                    reason="expired",
                    unspendable_proof=f"expired at {prepared.expiration_ms} ms",
                )
            return ChainStatus(0)
        if info.get("receipt", {}).get("result") not in (None, "SUCCESS"):
            return ChainStatus(0, rejected=True, reason=str(info["receipt"]["result"]))
        height = int(info.get("blockNumber", 0))
        ref, _ = self.client.now_block()
        return ChainStatus(max(0, ref.number - height + 1), height=height)
