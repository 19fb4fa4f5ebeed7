"""The solo orderer: the ledger as a chain of one validator, in-process.

CometBFT's kvstore runs behind its local client exactly as behind a socket; this is that model
for synod. `SoloOrderer.submit` signs a transaction with the key of the role that may submit
its kind, and then runs what a CometBFT validator would run on the same `LedgerApp`: `check_tx`
(bytes, signature, permission, not yet applied), `finalize_block` of a block holding only that
transaction, `commit`. The signatures, permissions, quorums (a committee of one: a quorum of
one), field limits, savepoints and app hash are the replicated ledger's own; solo mode is the
degenerate case of the same rules, never a second set. Nothing here applies a transaction
itself.

`submit` has the shape of `ReplicatedConsensus.submit` (both are a `Consensus`), except that
the block is final when it returns: the receipt, or the refusal the state machine raised
(`synod.state.errors.rejection` turns the outcome back into that exception). Calls must not
overlap (one writer connection): the runtime and the API call it from one thread or one event
loop, and it may run inside a transaction the caller opened (the API's group commit), whose
commit then makes the block durable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from synod.consensus.app import Code, LedgerApp, Outcome
from synod.consensus.committee import Committee, raw_public
from synod.consensus.signed import SignedTx, Unauthorized
from synod.state import errors as E
from synod.state.audit import AuditLog
from synod.state.machine import Ledger, Receipt
from synod.state.transactions import Tx

SOLO_CHAIN_ID = "synod-solo"
SOLO_MEMBER = "member:1"
SOLO_OPERATOR = "operator:api"


@dataclass(frozen=True)
class SoloKeys:
    """The keys one solo process signs with: its member key (the runtime's write-backs) and
    its operator key (user requests, through the API or the console). Never printed."""

    member: Ed25519PrivateKey = field(repr=False)
    operator: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> SoloKeys:
        """Fresh keys for a ledger that only this process writes (the embedded default): a
        signature is checked when its transaction is ordered and never again, so a restart
        may bring new ones."""
        return cls(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate())

    def committee(self, chain_id: str = SOLO_CHAIN_ID) -> Committee:
        name = SOLO_OPERATOR.partition(":")[2]
        return Committee(chain_id, {1: raw_public(self.member)}, {name: raw_public(self.operator)})

    def signers(self) -> Mapping[str, Ed25519PrivateKey]:
        return {SOLO_MEMBER: self.member, SOLO_OPERATOR: self.operator}


class SoloOrderer:
    """One validator over `app`; `signers` are the keys it may sign with, by signer name."""

    def __init__(self, app: LedgerApp, signers: Mapping[str, Ed25519PrivateKey]) -> None:
        self.app = app
        self._signers = dict(signers)
        self.blocks = 0

    @classmethod
    def over(
        cls,
        ledger: Ledger,
        audit: AuditLog | None = None,
        keys: SoloKeys | None = None,
        chain_id: str = SOLO_CHAIN_ID,
    ) -> SoloOrderer:
        """A solo chain over `ledger`'s store (its writer connection also serves the checks:
        one thread makes and checks the blocks)."""
        keys = keys or SoloKeys.generate()
        app = LedgerApp(ledger.db, ledger.db, keys.committee(chain_id), ledger, audit)
        return cls(app, keys.signers())

    @property
    def ledger(self) -> Ledger:
        return self.app.ledger

    @property
    def height(self) -> int:
        return self.app.info()[0]

    def signed(self, tx: Tx) -> SignedTx:
        """Signed by the first of this orderer's signers whose role may submit the kind."""
        committee = self.app.committee
        for signer, key in self._signers.items():
            if committee.may_submit(signer, tx.KIND):
                return SignedTx.sign(tx, signer, key, committee.chain_id)
        raise Unauthorized(f"no key here may submit {tx.KIND}")

    def submit(self, tx: Tx) -> Receipt | None:
        """Order `tx` in a block of its own: its receipt (marked `duplicate` when it was applied
        before), None while a witnessed fact still waits for more members, or the refusal."""
        return self.deliver(self.signed(tx).encode())

    def deliver(self, raw: bytes) -> Receipt | None:
        """Order a transaction someone already signed (an operator's console, a test)."""
        checked = self.app.check_tx(raw)
        if checked.code == Code.DUPLICATE:
            done = self.ledger.applied(SignedTx.decode(raw).tx.tx_id)
            if done is not None:
                return done
            return None  # this signer already vouched for a fact still pending
        if checked.code != Code.OK:
            raise _refusal(checked)
        outcomes, _ = self.app.finalize_block(self.height + 1, [raw])
        self.app.commit()
        self.blocks += 1
        return _receipt(outcomes[0])


def _receipt(outcome: Outcome) -> Receipt | None:
    data = json.loads(outcome.data) if outcome.data else {}
    if outcome.code not in (Code.OK, Code.DUPLICATE) or "rejected" in data:
        raise _refusal(outcome)
    if "seq" not in data:
        return None  # a witnessed fact or an attestation, pending
    return Receipt(
        str(data["tx_id"]),
        str(data["kind"]),
        int(data["seq"]),
        dict(data["result"]),
        duplicate=outcome.code == Code.DUPLICATE,
    )


def _refusal(outcome: Outcome) -> E.Rejected:
    if outcome.code == Code.UNAUTHORIZED:
        return Unauthorized(outcome.log)
    if outcome.code == Code.MALFORMED:
        return E.MalformedTransaction(outcome.log)
    data = json.loads(outcome.data) if outcome.data else {}
    reason = str(data.get("rejected", E.Rejected.reason))
    text = outcome.log.partition("ledger refused: ")[2] or outcome.log
    return E.rejection(reason, text)
