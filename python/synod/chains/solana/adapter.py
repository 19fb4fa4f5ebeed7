"""The Solana chain adapter over a LiteSVM "node" (the real Solana runtime, in-process).

Why there is a `prepare` step: a Solana message contains a *recent blockhash*, so the bytes the
threshold signers sign exist only once a blockhash is chosen. The signing side therefore asks
`prepare(withdrawal)` for the message; the adapter records the blockhash it handed out (per
withdrawal and template) and `broadcast` later rebuilds that exact message and attaches the
signature given as `signature_ref` (hex of the 64-byte FROST-Ed25519 signature).

Why a template is re-signed with a new blockhash only after the old one expired: a transaction
is accepted only while its blockhash is recent (about 150 blocks on a real cluster; in LiteSVM,
only while it equals `latest_blockhash()`). While the recorded blockhash is valid, `prepare`
returns the same message, so a re-signed template is the *same* message (validators
de-duplicate by message hash) and cannot pay twice. Only when every recorded blockhash has
expired and no known signature of those messages was processed can none of them ever be
processed; that is the "provably unspendable" condition, reported as
`ChainStatus.unspendable_proof`, after which `prepare` hands out a fresh blockhash.

Honest limits:

* LiteSVM has no fork choice and no confirmations: a processed transaction is final at once,
  so `status` reports the configured depth (``confirmations``) and the slot at broadcast.
* LiteSVM de-duplicates by *signature*, not by message hash as Agave validators do. FROST
  signatures are randomized, so two sessions over one message give two valid signatures that
  LiteSVM would both execute. `broadcast` therefore refuses to send a second signature for a
  message that already landed and returns the first txid instead.
* "No signature of the message was processed" is read from the group account's transaction
  history (`signatures_for_address`, a cluster's ``getSignaturesForAddress``; locally the
  `LocalCluster` LiteSVM), not only from the signatures this adapter knows: a signature an
  aggregator withheld and broadcast itself is found there (and reported as the payment).
  Over a node without that history the adapter never claims unspendable (fails safe).
* The record of handed-out blockhashes must survive a restart for the proof to be possible:
  pass a persistent `store` (any string-to-string mapping). Without a record, `status` never
  claims unspendable (it fails safe: the funds stay reserved).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction_metadata import TransactionMetadata

from synod.chains.solana.tx import SolanaTransfer, TokenRegistry
from synod.runtime.interfaces import ChainStatus
from synod.state.machine import Withdrawal

OK = "ok"  # processed, succeeded
ERROR = "error"  # processed, failed (fee paid; the message can never run again)
REJECTED = "rejected"  # not processed (bad signature, expired blockhash, duplicate, ...)


class NoFreshBlockhash(RuntimeError):
    """A new message is needed but the node still serves a blockhash already used (retry)."""


@dataclass(frozen=True)
class Prepared:
    """What the signers sign for one withdrawal, and the blockhash it commits to."""

    message: bytes
    blockhash: str
    transfer: SolanaTransfer


class SolanaAdapter:
    """`ChainAdapter` for "sol": prepare -> (threshold signing) -> broadcast -> status."""

    chain = "sol"

    def __init__(
        self,
        node: LiteSVM,
        group_public_key: bytes,
        tokens: TokenRegistry | None = None,
        confirmations: int = 1,
        store: MutableMapping[str, str] | None = None,
    ) -> None:
        if len(group_public_key) != 32:
            raise ValueError("an Ed25519 group public key is 32 bytes")
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.node = node
        self.group_public_key = group_public_key
        self.tokens = dict(tokens or {})
        self.confirmations = confirmations
        self.store: MutableMapping[str, str] = {} if store is None else store

    # -- the record of handed-out blockhashes ------------------------------------------------
    @staticmethod
    def _key(w: Withdrawal) -> str:
        if not w.template or not w.template_hash:
            raise ValueError(f"{w.withdraw_id}: no template recorded yet")
        return f"sol:{w.withdraw_id}:{w.template_hash}"

    def _contexts(self, w: Withdrawal) -> list[dict[str, Any]]:
        raw = self.store.get(self._key(w))
        contexts: list[dict[str, Any]] = json.loads(raw) if raw else []
        return contexts

    def _save(self, w: Withdrawal, contexts: list[dict[str, Any]]) -> None:
        self.store[self._key(w)] = json.dumps(contexts, sort_keys=True)

    def _transfer(self, w: Withdrawal, blockhash: str) -> SolanaTransfer:
        assert w.template is not None
        return SolanaTransfer.build(w.template, self.group_public_key, blockhash, self.tokens)

    def _valid(self, blockhash: str) -> bool:
        """LiteSVM accepts exactly its latest blockhash (a cluster: the last ~150 blocks)."""
        return str(self.node.latest_blockhash()) == blockhash

    def _processed(self, sig: str, recorded: str | None) -> str | None:
        """OK / ERROR if the transaction with this signature was processed, else None."""
        if recorded in (OK, ERROR):
            return recorded
        result = self.node.get_transaction(Signature.from_string(sig))
        if result is None:
            return None
        return OK if isinstance(result, TransactionMetadata) else ERROR

    def _history(self) -> list[tuple[str, bytes]] | None:
        """The group account's processed transactions (signature, message), newest first, or
        None when the node keeps no history (then nothing is ever claimed unspendable)."""
        lookup = getattr(self.node, "signatures_for_address", None)
        if lookup is None:
            return None
        entries: list[tuple[str, bytes]] = lookup(Pubkey.from_bytes(self.group_public_key))
        return entries

    def _landed(self, ctx: dict[str, Any], w: Withdrawal) -> tuple[str, str] | None:
        """(signature, OK / ERROR) of this context's message if it was processed: under a
        signature this adapter sent, or under any other one the group account's history
        shows (a signature an aggregator withheld and broadcast itself)."""
        for sig, info in ctx["sent"].items():
            outcome = self._processed(sig, info.get("result"))
            if outcome is not None:
                return str(sig), outcome
        history = self._history()
        if history:
            message = self._transfer(w, ctx["blockhash"]).message_bytes()
            for sig, seen in history:
                if seen == message:
                    outcome = self._processed(sig, None)
                    if outcome is not None:
                        ctx["sent"][sig] = {"result": outcome, "reason": "", "slot": ""}
                        return sig, outcome
        return None

    def _dead(self, ctx: dict[str, Any], w: Withdrawal) -> bool:
        """The context's message can never (again) be processed.

        Expiry is read *before* the history: a message seen expired cannot land afterwards,
        so a landing that raced the check is still found.
        """
        expired = not self._valid(ctx["blockhash"])
        landed = self._landed(ctx, w)
        if landed is not None:
            return landed[1] == ERROR
        return expired

    # -- signing side -----------------------------------------------------------------------
    def sign_context(self, withdrawal: Withdrawal) -> str:
        """The blockhash the ledger's `StartSign` fixes for this template: the recorded one
        when there is one, else what `prepare` would choose (and records)."""
        return withdrawal.sign_context or self.prepare(withdrawal).blockhash

    def prepare(self, withdrawal: Withdrawal) -> Prepared:
        """The message to threshold-sign for this withdrawal (recorded before it is returned).

        Once the ledger agreed a blockhash for the template (`withdrawal.sign_context`), the
        message under exactly that one, recorded here if this adapter had not handed it out
        (another member's worker chose it). Before that: the same message while its
        blockhash is valid or once it was processed; a new blockhash only when every earlier
        message is dead (see the module docstring).
        """
        contexts = self._contexts(withdrawal)
        agreed = withdrawal.sign_context
        if agreed:
            prepared = self._prepared(withdrawal, agreed)  # validates template and blockhash
            if all(ctx["blockhash"] != agreed for ctx in contexts):
                contexts.append({"blockhash": agreed, "sent": {}})
                self._save(withdrawal, contexts)
            return prepared
        for ctx in reversed(contexts):
            landed = self._landed(ctx, withdrawal)
            if landed is not None and landed[1] == OK:
                return self._prepared(withdrawal, ctx["blockhash"])  # paid: never a new message
        live = [ctx for ctx in contexts if not self._dead(ctx, withdrawal)]
        if live:
            return self._prepared(withdrawal, live[-1]["blockhash"])
        blockhash = str(self.node.latest_blockhash())
        if any(ctx["blockhash"] == blockhash for ctx in contexts):
            # Processed with error under the current blockhash: the same message again would be
            # a duplicate (AlreadyProcessed) until the node moves to a new blockhash.
            raise NoFreshBlockhash(f"{withdrawal.withdraw_id}: wait for a new blockhash")
        prepared = self._prepared(withdrawal, blockhash)  # validates the template first
        contexts.append({"blockhash": blockhash, "sent": {}})
        self._save(withdrawal, contexts)
        return prepared

    def _prepared(self, w: Withdrawal, blockhash: str) -> Prepared:
        transfer = self._transfer(w, blockhash)
        return Prepared(transfer.message_bytes(), blockhash, transfer)

    # -- ChainAdapter -----------------------------------------------------------------------
    def broadcast(self, withdrawal: Withdrawal, signature_ref: str) -> str:
        """Attach the signature to its prepared message and send it; returns the txid.

        Idempotent: a signature already processed is not sent again, and neither is a second
        signature over a message that already landed (its txid is returned instead). A
        signature matching no prepared message is still sent to the newest one, so the
        runtime's rejection is what `status` reports.
        """
        try:
            signature = bytes.fromhex(signature_ref)
        except ValueError:
            raise ValueError("signature_ref must be hex") from None
        if len(signature) != 64:
            raise ValueError("signature_ref must be a 64-byte Ed25519 signature")
        contexts = self._contexts(withdrawal)
        if not contexts:
            raise ValueError(f"{withdrawal.withdraw_id}: prepare() was never called")
        ctx, transfer = contexts[-1], None
        for candidate in reversed(contexts):
            t = self._transfer(withdrawal, candidate["blockhash"])
            if t.verifies(signature):
                ctx, transfer = candidate, t
                break
        if transfer is None:
            transfer = self._transfer(withdrawal, ctx["blockhash"])
        sig = Signature.from_bytes(signature)
        landed = self._landed(ctx, withdrawal)
        if landed is not None:
            return landed[0]
        if self.node.get_transaction(sig) is not None:  # sent before, but not recorded
            ctx["sent"][str(sig)] = {"result": "", "reason": "", "slot": ""}
            self._save(withdrawal, contexts)
            return str(sig)
        result = self.node.send_transaction(transfer.transaction(signature))
        if isinstance(result, TransactionMetadata):
            info = {"result": OK, "reason": ""}
        elif self.node.get_transaction(sig) is not None:  # executed and failed, fee charged
            info = {"result": ERROR, "reason": str(result.err())}
        else:
            info = {"result": REJECTED, "reason": str(result.err())}
        info["slot"] = str(self.node.get_clock().slot)
        ctx["sent"][str(sig)] = info
        self._save(withdrawal, contexts)
        return str(sig)

    def status(self, withdrawal: Withdrawal) -> ChainStatus:
        """Final at once when processed (LiteSVM has no forks); unspendable once provably dead."""
        try:
            contexts = self._contexts(withdrawal)
        except ValueError:
            contexts = []
        known: dict[str, dict[str, Any]] = {}
        for ctx in contexts:
            known.update(ctx["sent"])
        candidates = list(known)
        if withdrawal.txid:
            candidates.insert(0, withdrawal.txid)
        ref = _txid_of_ref(withdrawal.signature_ref)
        if ref:
            candidates.append(ref)
        for sig in dict.fromkeys(candidates):
            if self._processed(sig, known.get(sig, {}).get("result")) == OK:
                slot = known.get(sig, {}).get("slot")
                height = int(slot) if slot else self.node.get_clock().slot
                return ChainStatus(self.confirmations, height=height)
        for ctx in contexts:  # landed under a signature this adapter never saw
            landed = self._landed(ctx, withdrawal)
            if landed is not None and landed[1] == OK:
                self._save(withdrawal, contexts)
                slot = self.node.get_clock().slot
                return ChainStatus(self.confirmations, height=slot, txid=landed[0])
        reason = ""
        if withdrawal.txid:
            info = known.get(withdrawal.txid, {})
            processed = self._processed(withdrawal.txid, info.get("result"))
            if processed == ERROR:
                reason = f"processed with error: {info.get('reason') or 'failed'}"
            elif info.get("result") == REJECTED:
                reason = f"rejected: {info.get('reason')}"
        dead = bool(contexts) and all(self._dead(ctx, withdrawal) for ctx in contexts)
        proof = self._proof(contexts, withdrawal) if dead and self._history() is not None else ""
        if proof and not reason:
            reason = "blockhash expired before the transaction was processed"
        if reason:
            return ChainStatus(0, rejected=True, reason=reason, unspendable_proof=proof)
        return ChainStatus(0)

    def _proof(self, contexts: list[dict[str, Any]], w: Withdrawal) -> str:
        latest = str(self.node.latest_blockhash())
        parts = []
        for ctx in contexts:
            landed = self._landed(ctx, w)
            if landed is not None:
                parts.append(f"{ctx['blockhash']}: {landed[0]} processed with error")
            else:
                parts.append(f"{ctx['blockhash']}: expired, {len(ctx['sent'])} known sig(s) unseen")
        digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
        return f"sol blockhash-expiry (latest {latest}; {'; '.join(parts)}) #{digest}"


def _txid_of_ref(signature_ref: str | None) -> str | None:
    try:
        raw = bytes.fromhex(signature_ref or "")
    except ValueError:
        return None
    return str(Signature.from_bytes(raw)) if len(raw) == 64 else None
