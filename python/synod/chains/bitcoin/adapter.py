"""The Bitcoin chain adapter: template -> signed transaction -> node, and back to a status.

`signature_ref` for a Bitcoin withdrawal is the hex of one 64-byte BIP340 signature per input,
in input order, comma-separated (`encode_signature_ref`): each signs that input's BIP341
key-path sighash (`sighashes`), under the output key of the custody's P2TR script.

Why `broadcast` does not raise when the node refuses: the worker moves the withdrawal to
BROADCAST with the txid (known before sending, since witnesses do not change it), and
`status` then reports ``rejected`` with the node's reason, so the state machine records the
failure and retries with the same template. Only "could not ask" (`TransportError`) raises.
Refusals are remembered in `store` (pass a persistent mapping to keep them across restarts);
without a record, `status` sends an unknown transaction again (`rebroadcast`), which also
recovers from a node that dropped it from its mempool.

Why `unspendable_proof` only counts deep conflicts: a conflicting mempool transaction can
still be replaced or dropped, and a conflict in a recent block can be reorganised away; only
once an input is spent by another transaction at least `conflict_depth` blocks deep (default
`MIN_CONFLICT_DEPTH`, never less) is this template treated as never minable. Esplora tells
the spending block's height. A JSON-RPC node only tells that the output is no longer in its
UTXO set, so the adapter records the tip height at which it first saw the input spent (in
`store`) and counts depth from there: a lower bound of the true depth, so it errs on the
side of waiting; if the output comes back (a reorg), the record is dropped.

Node requirements: with JSON-RPC the node needs a transaction index (Bitcoin Core
``-txindex=1``, btcd ``--txindex``) so confirmed transactions can be looked up by txid.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Protocol

from synod.chains.bitcoin.address import Network
from synod.chains.bitcoin.rpc import (
    BitcoinError,
    BitcoinRpc,
    EsploraClient,
    EsploraError,
    RpcError,
)
from synod.chains.bitcoin.tx import (
    OutPoint,
    Transaction,
    build_transaction,
    decode_signature_ref,
)
from synod.runtime.interfaces import ChainStatus
from synod.state.machine import Withdrawal, recorded_template

# sendrawtransaction codes meaning "the node looked at it and said no" (Bitcoin Core's
# RPC_VERIFY_ERROR, _REJECTED, _ALREADY_IN_CHAIN, RPC_DESERIALIZATION_ERROR; btcd uses them too).
REFUSAL_CODES = frozenset({-25, -26, -27, -22})
MIN_CONFLICT_DEPTH = 6  # blocks a conflicting spend must be buried under to count as proof


class _Backend(Protocol):
    def send(self, raw_hex: str) -> str | None:
        """None when accepted, else the node's reason for refusing."""
        ...

    def lookup(self, txid: str) -> ChainStatus | None:
        """Confirmations and height, or None when the node does not know the transaction."""
        ...

    def spent_elsewhere(self, outpoint: OutPoint, txid: str) -> str:
        """A proof that a transaction other than `txid` spent `outpoint` at least `depth`
        blocks deep, or ""."""
        ...


class _RpcBackend:
    def __init__(self, rpc: BitcoinRpc, depth: int, store: MutableMapping[str, str]) -> None:
        self.rpc = rpc
        self.depth = depth
        self.store = store
        self._txindex = False

    def _require_txindex(self) -> None:
        """Without a transaction index, our own confirmed transaction looks "unknown" and its
        spent inputs would look like a conflict: refuse to judge rather than double-pay."""
        if self._txindex:
            return
        tip = self.rpc.get_best_block_hash()
        coinbase = str(self.rpc.get_block(tip, 1)["tx"][0])
        try:
            self.rpc.get_raw_transaction(coinbase)
        except RpcError as err:
            if err.code == -5:
                raise BitcoinError(
                    "the node cannot look up confirmed transactions by txid: enable its "
                    "transaction index (bitcoind -txindex=1, btcd --txindex)"
                ) from None
            raise
        self._txindex = True

    def send(self, raw_hex: str) -> str | None:
        try:
            self.rpc.send_raw_transaction(raw_hex)
        except RpcError as err:
            if err.code in REFUSAL_CODES:
                return f"{err.message} (code {err.code})"
            raise
        return None

    def lookup(self, txid: str) -> ChainStatus | None:
        try:
            info = self.rpc.get_raw_transaction(txid)
        except RpcError as err:
            if err.code == -5:  # RPC_INVALID_ADDRESS_OR_KEY: no such transaction
                return None
            raise
        confirmations = int(info.get("confirmations") or 0)
        if confirmations <= 0 or not info.get("blockhash"):
            return ChainStatus(confirmations=0)
        height = int(self.rpc.get_block_header(str(info["blockhash"]))["height"])
        return ChainStatus(confirmations=confirmations, height=height)

    def spent_elsewhere(self, outpoint: OutPoint, txid: str) -> str:
        # Created in the chain the node follows, no longer in its UTXO set (mempool ignored),
        # and our own transaction unknown: a confirmed transaction spent it. A node that has
        # not (yet) seen the creating block proves nothing.
        self._require_txindex()
        seen_key = f"btc:spent-seen:{outpoint}"
        if self.rpc.get_tx_out(outpoint.txid, outpoint.vout, False) is not None:
            self.store.pop(seen_key, None)  # unspent (again, after a reorg)
            return ""
        created = self.lookup(outpoint.txid)
        if created is None or created.confirmations < 1:
            return ""
        if self.lookup(txid) is not None:  # ours got mined meanwhile: no conflict
            return ""
        height = self.rpc.get_block_count()
        first_seen = int(self.store.setdefault(seen_key, str(height)))
        depth = height - first_seen + 1  # the spend is at least this deep
        if depth < self.depth:
            return ""
        tip = self.rpc.get_best_block_hash()
        return (
            f"{outpoint} (created at height {created.height}) is spent in the chain, seen "
            f"spent since height {first_seen} ({depth} blocks) at block {tip}, not by {txid}"
        )


class _EsploraBackend:
    def __init__(self, esplora: EsploraClient, depth: int) -> None:
        self.esplora = esplora
        self.depth = depth

    def send(self, raw_hex: str) -> str | None:
        try:
            self.esplora.broadcast(raw_hex)
        except EsploraError as err:
            if err.status == 400:
                return err.message
            raise
        return None

    def lookup(self, txid: str) -> ChainStatus | None:
        info = self.esplora.tx_status(txid)
        if info is None:
            return None
        if not info.get("confirmed"):
            return ChainStatus(confirmations=0)
        height = int(info["block_height"])
        tip = self.esplora.tip_height()
        return ChainStatus(confirmations=max(tip - height + 1, 1), height=height)

    def spent_elsewhere(self, outpoint: OutPoint, txid: str) -> str:
        spend = self.esplora.outspend(outpoint.txid, outpoint.vout)
        status = spend.get("status") or {}
        if not spend.get("spent") or spend.get("txid") == txid or not status.get("confirmed"):
            return ""
        depth = self.esplora.tip_height() - int(status["block_height"]) + 1
        if depth < self.depth:
            return ""
        return (
            f"{outpoint} spent by {spend.get('txid')} (input {spend.get('vin')}) in block "
            f"{status.get('block_hash')} at height {status.get('block_height')}"
        )


class BitcoinAdapter:
    """`ChainAdapter` for "btc" over a JSON-RPC node or an Esplora server."""

    chain = "btc"

    def __init__(
        self,
        client: BitcoinRpc | EsploraClient,
        network: Network,
        *,
        op_return: bool = False,
        rebroadcast: bool = True,
        store: MutableMapping[str, str] | None = None,
        conflict_depth: int = MIN_CONFLICT_DEPTH,
    ) -> None:
        if conflict_depth < MIN_CONFLICT_DEPTH:
            raise ValueError(f"conflict_depth must be at least {MIN_CONFLICT_DEPTH}")
        self.client = client
        self.network = network
        self.op_return = op_return
        self.rebroadcast = rebroadcast
        self.store: MutableMapping[str, str] = {} if store is None else store
        self.conflict_depth = conflict_depth
        self._backend: _Backend = (
            _RpcBackend(client, conflict_depth, self.store)
            if isinstance(client, BitcoinRpc)
            else _EsploraBackend(client, conflict_depth)
        )

    # -- what the signers sign ------------------------------------------------------------------
    def transaction(self, withdrawal: Withdrawal) -> Transaction:
        """The unsigned transaction of the withdrawal's recorded template."""
        template = recorded_template(withdrawal)
        return build_transaction(template, self.network, op_return=self.op_return)

    def sighashes(self, withdrawal: Withdrawal) -> list[bytes]:
        """One BIP341 key-path sighash per input: the messages for the threshold signers."""
        return self.transaction(withdrawal).sighashes()

    def signed_transaction(self, withdrawal: Withdrawal, signature_ref: str) -> Transaction:
        tx = self.transaction(withdrawal)
        sigs = decode_signature_ref(signature_ref)
        if len(sigs) != len(tx.inputs):
            raise ValueError(f"{len(sigs)} signatures for {len(tx.inputs)} inputs")
        return tx.with_signatures(sigs)

    # -- ChainAdapter ---------------------------------------------------------------------------
    def broadcast(self, withdrawal: Withdrawal, signature_ref: str) -> str:
        """Attach the signatures, send, return the txid (the same on every call)."""
        tx = self.signed_transaction(withdrawal, signature_ref)
        self._send(tx)
        return tx.txid

    def _send(self, tx: Transaction) -> str | None:
        """Send a signed transaction; record and return the refusal reason, if any."""
        reason: str | None
        bad = tx.invalid_signatures()
        if bad:
            reason = f"signature(s) for input(s) {bad} do not verify under the output key"
        else:
            reason = self._backend.send(tx.hex())
            if reason is not None and self._backend.lookup(tx.txid) is not None:
                reason = None  # "already known / already in the chain": sent before
        key = f"btc:refused:{tx.txid}"
        if reason is None:
            self.store.pop(key, None)
        else:
            self.store[key] = reason
        return reason

    def status(self, withdrawal: Withdrawal) -> ChainStatus:
        tx = self.transaction(withdrawal)
        seen = self._backend.lookup(tx.txid)
        if seen is not None:
            return seen
        # Every input spent elsewhere is named, so the ledger writes them all off at once.
        spent = {
            str(i.outpoint): self._backend.spent_elsewhere(i.outpoint, tx.txid) for i in tx.inputs
        }
        proofs = {outpoint: proof for outpoint, proof in spent.items() if proof}
        if proofs:
            return ChainStatus(
                confirmations=0,
                rejected=True,
                reason=f"input {next(iter(proofs))} was spent by another transaction",
                unspendable_proof="; ".join(proofs.values()),
                spent_outpoints=tuple(proofs),
            )
        reason = self.store.get(f"btc:refused:{tx.txid}")
        if reason is None and self.rebroadcast and withdrawal.signature_ref:
            reason = self._send(self.signed_transaction(withdrawal, withdrawal.signature_ref))
        if reason is not None:
            return ChainStatus(confirmations=0, rejected=True, reason=reason)
        return ChainStatus(confirmations=0)
