"""The custody ledger as a deterministic, replicated application (the ABCI methods' logic).

CometBFT orders signed transactions into blocks; every node runs this application over its own
database and must reach the same state. The rules:

- `check_tx` looks at committed state through a separate read connection and changes nothing:
  the bytes parse, the signer is in the committee and may submit the kind, the id is unused.
- `process_proposal` refuses a block carrying a transaction no honest proposer would include
  (malformed, unsigned, not permitted); `prepare_proposal` keeps the mempool's order.
- `finalize_block` opens ONE database transaction for the block, applies each transaction in
  block order with `Ledger.apply` under its own savepoint (a refusal undoes only that one), and
  returns the app hash. Nothing reads a clock, randomness or an unordered collection.
- `commit` writes the height and app hash inside that same transaction and commits it, so the
  database is always at a block boundary: after a crash `info` reports the last durable block
  and CometBFT replays the rest.

No fact the ledger cannot check for itself is one member's word (`WITNESSED`): a deposit, a
withdrawal's confirmation, a strike, a new key, a failed ceremony, and a `Requeue` carrying an
unspendability proof (it releases funds or writes them off). Each waits in `attested` until a
quorum of members vouched for it, by submitting the very same transaction or an `Attest` with
verdict ``valid`` (the proof attester re-checks a proof against its own chain node). Enough
``forged`` verdicts to make the quorum unreachable refuse it and record a strike against every
member who vouched for it. Versions that disagree (another amount for the same deposit) are
kept apart under one `subject` and counted, never merged; when one applies, the others are
superseded.

The app hash is a hash chain: each block's hash covers the previous one, the height, every
transaction's bytes with its outcome (code, log, receipt) and a canonical dump of the balances.
The handlers are deterministic, so the ordered inputs with their receipts fix the whole ledger
state; the chained outcomes catch a node whose handler decided differently at the block it
happened, and the balances catch a divergence in the money itself. It costs O(block), not
O(state), which is what lets a block of thousands of transactions commit in milliseconds;
`state_digest` hashes full canonical table dumps for the offline determinism check.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import threading
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from synod.consensus.committee import Committee
from synod.consensus.signed import FORGED, VALID, Attest, SignedTx, Unauthorized
from synod.metrics import LEDGER_TRANSACTIONS
from synod.state import errors as E
from synod.state.audit import AuditAction, AuditLog
from synod.state.db import PostgresDatabase, SqliteDatabase, migrate
from synod.state.machine import Ledger
from synod.state.transactions import (
    Confirm,
    DepositCredit,
    KeygenFailed,
    KeyReady,
    Requeue,
    Strike,
    Tx,
    WithdrawRequest,
    parse_tx,
)

log = logging.getLogger("synod.consensus.app")
Database = SqliteDatabase | PostgresDatabase
HASH_DOMAIN = b"synod/app-hash/v1"
FORGED_PROOF = "vouched for a forged unspendability proof"
VERIFIED_CACHE_BYTES = 64 << 20  # authorized transactions remembered, by their size

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE consensus_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE block_hashes (height BIGINT PRIMARY KEY, app_hash TEXT NOT NULL);
        CREATE TABLE attested (
            tx_id TEXT PRIMARY KEY, body TEXT NOT NULL, proposer TEXT NOT NULL,
            height BIGINT NOT NULL, status TEXT NOT NULL, outcome TEXT
        );
        CREATE TABLE attestations (
            tx_id TEXT NOT NULL, member BIGINT NOT NULL, verdict TEXT NOT NULL,
            height BIGINT NOT NULL, PRIMARY KEY (tx_id, member)
        );
        """,
    ),
    (
        2,
        # What a witnessed transaction is about (a deposit, a withdrawal's confirmation, a
        # strike, a key): versions that disagree share it, and are counted, never merged.
        """
        ALTER TABLE attested ADD COLUMN subject TEXT NOT NULL DEFAULT '';
        CREATE INDEX attested_subject ON attested (subject, status);
        CREATE INDEX attested_proposer ON attested (proposer, status)
        """,
    ),
]


class Code(IntEnum):
    """`ExecTxResult.code` / `ResponseCheckTx.code`: 0 is success, as CometBFT expects."""

    OK = 0
    MALFORMED = 1
    UNAUTHORIZED = 2
    DUPLICATE = 3
    REJECTED = 4
    FAILED = 5  # applying it raised an error that is not a refusal: undone, and logged


class AttestStatus:
    PENDING, APPLIED, REFUSED, FORGED = "pending", "applied", "refused", "forged"
    SUPERSEDED = "superseded"  # another version of the same fact reached the quorum


WITNESSED = frozenset({"deposit_credit", "confirm", "strike", "key_ready", "keygen_failed"})
"""Member write-backs that state a fact the ledger cannot check for itself (a deposit, a
payment mined, a member's misbehaviour, a new key or a failed ceremony): applied only once a
quorum of members submitted the very same transaction. A `Requeue` with an unspendability proof
is witnessed too. The other member kinds move nothing on one member's word: `reserve`,
`start_sign`, `migration_start` and `migration_request` are decided by the ledger from its own
state, `signed` and `broadcast` record what the fixed template determines, `fail` and a
`requeue` without proof keep the template (re-signing the same message), and
`migrations_done` and `activate` follow from witnessed confirmations."""
MAX_PENDING_PER_MEMBER = 4096
"""Witnessed transactions one member may have proposed and still pending: a member cannot grow
the table without bound with facts nobody else confirms."""


@dataclass(frozen=True)
class Outcome:
    code: Code
    log: str = ""
    data: bytes = b""

    def digest(self, raw: bytes) -> bytes:
        h = hashlib.sha256()
        for part in (raw, self.log.encode(), self.data):
            h.update(len(part).to_bytes(8, "big") + part)
        h.update(int(self.code).to_bytes(4, "big"))
        return h.digest()


_REFUSAL = re.compile(r"ledger refused: ([a-z_]+): ")


def _data(**fields: Any) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def needs_attestation(tx: Tx) -> bool:
    """A quorum of members must submit it (or attest it) before it applies: the `WITNESSED`
    kinds, and a Requeue whose proof would release or write off funds."""
    if isinstance(tx, Requeue):
        return bool(tx.unspendable_proof)
    return tx.KIND in WITNESSED


def subject_of(tx: Tx) -> str:
    """What a witnessed transaction is about: two versions of one fact (another amount for the
    same deposit, another txid for the same withdrawal) share it."""
    if isinstance(tx, DepositCredit):
        return f"deposit/{tx.chain}/{tx.ref}"
    if isinstance(tx, Confirm | Requeue):
        return f"{tx.KIND}/{tx.withdraw_id}/{tx.attempt}"
    if isinstance(tx, Strike):
        return f"strike/{tx.member}/{tx.evidence}"
    if isinstance(tx, KeyReady | KeygenFailed):
        return f"{tx.KIND}/{tx.epoch}/{tx.attempt}"
    return f"{tx.KIND}/{tx.tx_id}"


class LedgerApp:
    """One node's replica. `db` is the writer; `reader` (a second connection to the same store)
    serves `check_tx`, `info` and queries from committed state only. Writer methods must not
    run concurrently with each other, nor reader methods with each other; a reader method may
    run while a block is applied."""

    def __init__(
        self,
        db: Database,
        reader: Database,
        committee: Committee,
        ledger: Ledger | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.db, self.reader, self.committee = db, reader, committee
        self.audit = audit  # this replica's trail: a row per transaction applied
        migrate(db, MIGRATIONS, "consensus_schema_version")
        self.ledger = ledger or Ledger(db)
        if self.ledger.db is not db:
            raise ValueError("the ledger must run on the application's writer connection")
        self._block: ExitStack | None = None
        self._verified: OrderedDict[bytes, tuple[SignedTx, int]] = OrderedDict()
        self._verified_bytes = 0
        self._verified_lock = threading.Lock()  # CheckTx and FinalizeBlock run on two threads
        self._pending: tuple[int, bytes] | None = None  # height, app hash awaiting commit
        self._careful = True  # statements answered one by one (not pipelined)

    # ------------------------------------------------------------------ Info / InitChain
    def info(self) -> tuple[int, bytes]:
        """(last committed height, its app hash): where CometBFT resumes or replays from."""
        rows = dict(self.reader.query("SELECT key, value FROM consensus_state"))
        return int(rows.get("height", 0)), bytes.fromhex(rows.get("app_hash", ""))

    def init_chain(self, chain_id: str) -> bytes:
        if chain_id != self.committee.chain_id:
            raise ValueError(
                f"genesis chain {chain_id!r}, committee file {self.committee.chain_id!r}"
            )
        return self._state()[1]

    # ------------------------------------------------------------------ CheckTx
    def check_tx(self, raw: bytes) -> Outcome:
        stx = self._admitted(raw)
        if isinstance(stx, Outcome):
            return stx
        tx = stx.tx
        if isinstance(tx, Attest):
            rows = self.reader.query("SELECT status FROM attested WHERE tx_id = ?", (tx.target,))
            if not rows or rows[0][0] != AttestStatus.PENDING:
                return Outcome(Code.REJECTED, f"nothing pending as {tx.target}")
            if self._attested(self.reader, tx.target, stx.member):
                return Outcome(Code.DUPLICATE, f"{stx.signer} already attested {tx.target}")
            return Outcome(Code.OK)
        tx_id = tx.tx_id
        if self.reader.query("SELECT 1 FROM applied_tx WHERE tx_id = ?", (tx_id,)):
            return Outcome(Code.DUPLICATE, f"{tx_id} already applied")
        if isinstance(tx, WithdrawRequest) and self.reader.query(
            "SELECT 1 FROM withdrawals WHERE request_id = ?", (tx.request_id,)
        ):  # the block would refuse it too: say so now, to whichever member's API sent it
            reason = E.DuplicateRequest.reason
            return Outcome(
                Code.REJECTED,
                f"{reason}: request {tx.request_id!r} already queued",
                _data(rejected=reason),
            )
        if needs_attestation(tx):
            rows = self.reader.query(
                "SELECT status, outcome FROM attested WHERE tx_id = ?", (tx_id,)
            )
            if rows and rows[0][0] != AttestStatus.PENDING:
                # a fact the ledger refused at its quorum: the same reason again (a watcher
                # that sends it once more learns it was a duplicate deposit, say)
                refused = _REFUSAL.search(str(rows[0][1] or ""))
                data = _data(rejected=refused.group(1)) if refused else b""
                return Outcome(Code.REJECTED, f"{tx_id} already decided: {rows[0][0]}", data)
            if self._attested(self.reader, tx_id, stx.member):
                return Outcome(Code.DUPLICATE, f"{stx.signer} already vouched for {tx_id}")
        return Outcome(Code.OK)

    def _admitted(self, raw: bytes) -> SignedTx | Outcome:
        """The authorized transaction, or its refusal as the outcome CheckTx and
        FinalizeBlock report."""
        try:
            return self._authorized(raw)
        except Unauthorized as err:
            return Outcome(Code.UNAUTHORIZED, err.message)
        except E.Rejected as err:
            return Outcome(Code.MALFORMED, err.message)
        except Exception as err:  # a decoder's bug must not stop the ledger
            log.error("a transaction could not be decoded: %s", type(err).__name__)
            return Outcome(Code.MALFORMED, "undecodable")

    def _authorized(self, raw: bytes) -> SignedTx:
        """Decoded and authorized, or the refusal. A pure function of the bytes and the
        committee, so the result is kept (bounded) between CheckTx, ProcessProposal and
        FinalizeBlock, which see the same transaction: its signature is verified once."""
        key = hashlib.sha256(raw).digest()
        with self._verified_lock:
            hit = self._verified.get(key)
        if hit is not None:
            return hit[0]
        stx = SignedTx.decode(raw)
        stx.authorize(self.committee)
        with self._verified_lock:
            if key not in self._verified:
                self._verified[key] = (stx, len(raw))
                self._verified_bytes += len(raw)
            while self._verified_bytes > VERIFIED_CACHE_BYTES:
                _, (_, size) = self._verified.popitem(last=False)
                self._verified_bytes -= size
        return stx

    @staticmethod
    def _attested(db: Database, tx_id: str, member: int | None) -> bool:
        return bool(
            db.query("SELECT 1 FROM attestations WHERE tx_id = ? AND member = ?", (tx_id, member))
        )

    # ------------------------------------------------------------------ proposals
    def prepare_proposal(self, txs: list[bytes], max_bytes: int) -> list[bytes]:
        """The mempool's order, kept; transactions that cannot be authorized are left out."""
        out, size = [], 0
        for raw in txs:
            if size + len(raw) > max_bytes:
                break
            if isinstance(self._admitted(raw), Outcome):
                continue
            out.append(raw)
            size += len(raw)
        return out

    def process_proposal(self, txs: list[bytes]) -> bool:
        """Accept only blocks an honest proposer could build: every transaction authorized,
        none twice (the same body from two members is two transactions, and fine)."""
        seen: set[bytes] = set()
        for raw in txs:
            if raw in seen:
                return False
            seen.add(raw)
            if isinstance(self._admitted(raw), Outcome):
                return False
        return True

    # ------------------------------------------------------------------ FinalizeBlock / Commit
    def finalize_block(self, height: int, txs: list[bytes]) -> tuple[list[Outcome], bytes]:
        """Apply the block in one database transaction (committed by `commit`).

        On PostgreSQL the block's statements are pipelined (no round trip for each write), so
        a statement's error surfaces later than the statement. Content cannot cause one (the
        field limits keep every value storable), but should one surface anyway, the block is
        rolled back and applied again statement by statement, where the error is charged to
        the transaction that caused it, exactly as on SQLite."""
        self.abort()
        last_height, prev_hash = self._state()
        if height != last_height + 1:
            raise ValueError(f"block {height} after committed height {last_height}")
        pipelined = isinstance(self.db, PostgresDatabase)
        try:
            block, outcomes, app_hash = self._apply_block(height, prev_hash, txs, pipelined)
        except self.db.faults:
            raise
        except Exception as err:
            if not pipelined:
                raise
            log.warning(
                "block %d: an error surfaced in the pipeline (%s); applying it again "
                "statement by statement",
                height,
                type(err).__name__,
            )
            block, outcomes, app_hash = self._apply_block(height, prev_hash, txs, False)
        self._block, self._pending = block, (height, app_hash)
        return outcomes, app_hash

    def _apply_block(
        self, height: int, prev_hash: bytes, txs: list[bytes], pipelined: bool
    ) -> tuple[ExitStack, list[Outcome], bytes]:
        block = ExitStack()
        block.enter_context(self.db.transaction())
        self._careful = not pipelined
        try:
            if pipelined and isinstance(self.db, PostgresDatabase):
                block.enter_context(self.db.pipeline())
            outcomes = [self._deliver(height, raw) for raw in txs]
            app_hash = self._hash(prev_hash, height, txs, outcomes)
            self.db.sync()  # every statement answered: an error surfaces in this block
        except BaseException:
            block.__exit__(*sys.exc_info())
            raise
        return block, outcomes, app_hash

    def commit(self) -> int:
        """Make the finalized block durable with its height and app hash; returns the height."""
        if self._block is None or self._pending is None:
            raise RuntimeError("commit without a finalized block")
        height, app_hash = self._pending
        for key, value in (("height", str(height)), ("app_hash", app_hash.hex())):
            self.db.execute(
                "INSERT INTO consensus_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        self.db.execute(
            "INSERT INTO block_hashes (height, app_hash) VALUES (?, ?)", (height, app_hash.hex())
        )
        block, self._block, self._pending = self._block, None, None
        block.close()
        return height

    def abort(self) -> None:
        """Roll back a finalized block that was never committed."""
        if self._block is not None:
            block, self._block, self._pending = self._block, None, None
            block.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def _state(self) -> tuple[int, bytes]:
        rows = dict(self.db.query("SELECT key, value FROM consensus_state"))
        return int(rows.get("height", 0)), bytes.fromhex(rows.get("app_hash", ""))

    def _hash(self, prev: bytes, height: int, txs: list[bytes], outcomes: list[Outcome]) -> bytes:
        h = hashlib.sha256(HASH_DOMAIN)
        h.update(len(prev).to_bytes(1, "big") + prev + height.to_bytes(8, "big"))
        h.update(len(txs).to_bytes(8, "big"))
        for raw, outcome in zip(txs, outcomes, strict=True):
            h.update(outcome.digest(raw))
        h.update(hashlib.sha256(canonical_rows(self.db, "balances")).digest())
        return h.digest()

    # ------------------------------------------------------------------ one transaction
    def _deliver(self, height: int, raw: bytes) -> Outcome:
        stx = self._admitted(raw)
        if isinstance(stx, Outcome):
            return stx
        if isinstance(stx.tx, Attest):
            return self._savepoint(lambda: self._attest(height, stx, stx.tx))
        if needs_attestation(stx.tx):
            tx = stx.tx
            return self._savepoint(lambda: self._vouch(height, stx, tx))
        return self._savepoint(lambda: self._apply(stx.tx))

    def _savepoint(self, action: Any) -> Outcome:
        """Run `action` so that a refusal, or any error its content causes, undoes exactly its
        own writes and becomes its outcome, the same on every replica. Only an error of the
        store itself (`db.faults`: disk, connection, lock) escapes, and stops the node; in a
        pipelined block any other error escapes too, and the block is applied again
        statement by statement (`finalize_block`)."""
        self.db.execute("SAVEPOINT synod_tx")
        try:
            outcome: Outcome = action()
        except E.Rejected as err:
            outcome = self._undo(Code.REJECTED, str(err), err.reason)
        except AssertionError as err:  # a ledger invariant: refuse, identically on every node
            outcome = self._undo(Code.REJECTED, f"invariant: {err}", "invariant")
        except self.db.faults:
            raise
        except Exception as err:  # content must never stop the ledger
            if not self._careful:
                raise
            # The log and data are fixed text: the error's own message may differ between
            # stores and versions, and the outcome is part of the app hash.
            log.error("a transaction failed to apply and was undone: %s", type(err).__name__)
            outcome = self._undo(Code.FAILED, "failed to apply", "failed")
        self.db.execute("RELEASE SAVEPOINT synod_tx")
        return outcome

    def _undo(self, code: Code, message: str, reason: str) -> Outcome:
        self.db.sync()  # pipelined: an earlier statement's error surfaces here, not later
        self.db.execute("ROLLBACK TO SAVEPOINT synod_tx")
        return Outcome(code, message, _data(rejected=reason))

    def _apply(self, tx: Tx) -> Outcome:
        receipt = self.ledger.apply(tx)
        data = _data(tx_id=receipt.tx_id, seq=receipt.seq, kind=receipt.kind, result=receipt.result)
        if receipt.duplicate:
            return Outcome(Code.DUPLICATE, f"{receipt.tx_id} already applied", data)
        if self.audit is not None:  # in the block's transaction: undone with the transaction
            self.audit.append(
                "consensus",
                AuditAction.LEDGER_TX,
                {
                    "kind": receipt.kind,
                    "tx_id": receipt.tx_id,
                    "seq": receipt.seq,
                    "withdraw_id": receipt.result.get("withdraw_id"),
                },
            )
        LEDGER_TRANSACTIONS.labels(receipt.kind).inc()
        return Outcome(Code.OK, "", data)

    def _vouch(self, height: int, stx: SignedTx, tx: Tx) -> Outcome:
        """A member submits a witnessed transaction: it proposes it, or vouches for it."""
        tx_id = tx.tx_id
        if self.db.query("SELECT 1 FROM applied_tx WHERE tx_id = ?", (tx_id,)):
            return self._apply(tx)  # the ledger's duplicate receipt
        if not self.db.query("SELECT 1 FROM attested WHERE tx_id = ?", (tx_id,)):
            ((pending,),) = self.db.query(
                "SELECT COUNT(*) FROM attested WHERE proposer = ? AND status = ?",
                (stx.signer, AttestStatus.PENDING),
            )
            if int(pending) >= MAX_PENDING_PER_MEMBER:
                raise E.TooManyPending(
                    f"{stx.signer} has {pending} witnessed transactions still pending"
                )
            self.db.execute(
                "INSERT INTO attested (tx_id, body, proposer, height, status, subject) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    tx_id,
                    tx.canonical().decode(),
                    stx.signer,
                    height,
                    AttestStatus.PENDING,
                    subject_of(tx),
                ),
            )
        return self._record(height, stx, tx_id, VALID)

    def _attest(self, height: int, stx: SignedTx, tx: Attest) -> Outcome:
        if not self.db.query("SELECT 1 FROM attested WHERE tx_id = ?", (tx.target,)):
            raise E.UnknownWithdrawal(f"nothing pending as {tx.target} to attest")
        return self._record(height, stx, tx.target, tx.verdict)

    def _record(self, height: int, stx: SignedTx, tx_id: str, verdict: str) -> Outcome:
        ((status, body),) = self.db.query(
            "SELECT status, body FROM attested WHERE tx_id = ?", (tx_id,)
        )
        if status != AttestStatus.PENDING:
            raise E.InvalidTransition(f"{tx_id} already decided: {status}")
        if self._attested(self.db, tx_id, stx.member):
            raise E.InvalidTransition(f"{stx.signer} already attested {tx_id}")
        self.db.execute(
            "INSERT INTO attestations (tx_id, member, verdict, height) VALUES (?, ?, ?, ?)",
            (tx_id, stx.member, verdict, height),
        )
        counts = dict(
            self.db.query(
                "SELECT verdict, COUNT(*) FROM attestations WHERE tx_id = ? GROUP BY verdict",
                (tx_id,),
            )
        )
        valid, forged = int(counts.get(VALID, 0)), int(counts.get(FORGED, 0))
        tally = f"{valid} valid, {forged} forged of quorum {self.committee.attest_quorum}"
        if valid >= self.committee.attest_quorum:
            return self._act(tx_id, body, tally)
        if forged >= self.committee.refute_quorum:
            self._refuse(height, tx_id, tally)
            return Outcome(
                Code.OK,
                f"{tx_id} refused as forged ({tally})",
                _data(tx_id=tx_id, status=AttestStatus.FORGED),
            )
        return Outcome(
            Code.OK,
            f"{tx_id} pending ({tally})",
            _data(tx_id=tx_id, status=AttestStatus.PENDING, valid=valid, forged=forged),
        )

    def _act(self, tx_id: str, body: str, tally: str) -> Outcome:
        """Quorum reached: the ledger applies the Requeue (or refuses it by its own rules)."""
        self.db.execute("SAVEPOINT synod_requeue")
        try:
            outcome = self._apply(parse_tx(body))
            status = AttestStatus.APPLIED
        except E.Rejected as err:
            self.db.execute("ROLLBACK TO SAVEPOINT synod_requeue")
            outcome = Outcome(
                Code.OK,
                f"quorum reached, ledger refused: {err}",
                _data(tx_id=tx_id, rejected=err.reason),
            )
            status = AttestStatus.REFUSED
        self.db.execute("RELEASE SAVEPOINT synod_requeue")
        self.db.execute(
            "UPDATE attested SET status = ?, outcome = ? WHERE tx_id = ?",
            (status, f"{tally}; {outcome.log}" if outcome.log else tally, tx_id),
        )
        if status == AttestStatus.APPLIED:  # other versions of the same fact are decided too
            self.db.execute(
                "UPDATE attested SET status = ?, outcome = ? "
                "WHERE subject = (SELECT subject FROM attested WHERE tx_id = ?) "
                "AND status = ? AND tx_id <> ?",
                (AttestStatus.SUPERSEDED, f"{tx_id} applied", tx_id, AttestStatus.PENDING, tx_id),
            )
        return outcome

    def _refuse(self, height: int, tx_id: str, tally: str) -> None:
        self.db.execute(
            "UPDATE attested SET status = ?, outcome = ? WHERE tx_id = ?",
            (AttestStatus.FORGED, tally, tx_id),
        )
        vouched = self.db.query(
            "SELECT member FROM attestations WHERE tx_id = ? AND verdict = ? ORDER BY member",
            (tx_id, VALID),
        )
        for (member,) in vouched:  # the ledger's own strikes, which power transitions count
            self.ledger.apply(Strike(int(member), FORGED_PROOF, tx_id))

    # ------------------------------------------------------------------ reads
    def strikes(self) -> dict[int, int]:
        """Strikes per member on the ledger (forged proofs among them)."""
        return Ledger(self.reader).transitions.strikes()

    def app_hashes(self, start: int = 1, end: int | None = None) -> dict[int, str]:
        """This replica's own app hash at each committed height in [start, end]."""
        rows = self.reader.query(
            "SELECT height, app_hash FROM block_hashes WHERE height >= ? AND height <= ?",
            (start, end if end is not None else 1 << 62),
        )
        return {int(h): str(a) for h, a in rows}

    def witness_counts(self) -> dict[str, int]:
        return witness_counts(self.reader)

    def proof_status(self, tx_id: str) -> str | None:
        rows = self.reader.query("SELECT status FROM attested WHERE tx_id = ?", (tx_id,))
        return str(rows[0][0]) if rows else None

    def close(self) -> None:
        self.abort()
        self.db.close()
        self.reader.close()


def witness_counts(db: Database) -> dict[str, int]:
    """Witnessed transactions by status, and `conflicts`: facts with more than one version
    (members who disagree, kept apart and never merged)."""
    counts = {
        str(status): int(n)
        for status, n in db.query("SELECT status, COUNT(*) FROM attested GROUP BY status")
    }
    ((conflicts,),) = db.query(
        "SELECT COUNT(*) FROM (SELECT subject FROM attested WHERE subject <> '' "
        "GROUP BY subject HAVING COUNT(*) > 1) versions"
    )
    return {**counts, "conflicts": int(conflicts)}


def pending_proofs(db: Database, member: int) -> list[tuple[str, Requeue]]:
    """Proof-carrying Requeues still waiting for a quorum that `member` has not voted on,
    oldest first: what its runtime re-checks against its own chain node."""
    rows = db.query(
        "SELECT tx_id, body, height FROM attested WHERE status = ? "
        "AND (subject = '' OR substr(subject, 1, 8) = 'requeue/') AND tx_id NOT IN "
        "(SELECT tx_id FROM attestations WHERE member = ?)",
        (AttestStatus.PENDING, member),
    )
    out = []
    for tx_id, body, _ in sorted(rows, key=lambda r: (int(r[2]), r[0])):
        tx = parse_tx(body)
        if isinstance(tx, Requeue):
            out.append((str(tx_id), tx))
    return out


STATE_TABLES = (
    "meta",
    "applied_tx",
    "withdrawals",
    "lots",
    "utxos",
    "reservations",
    "balances",
    "broadcasts",
    "committees",
    "transitions",
    "strikes",
    "attested",
    "attestations",
)


def canonical_rows(db: Database, table: str) -> bytes:
    """A table's rows as canonical JSON, sorted in Python (never by a collation)."""
    rows = [[None if v is None else str(v) for v in r] for r in db.query(f"SELECT * FROM {table}")]
    return json.dumps(sorted(rows, key=lambda r: [(v is None, v or "") for v in r])).encode()


def state_digest(db: Database) -> str:
    """SHA-256 over canonical dumps of every ledger and consensus table: two replicas with the
    same digest hold the same state (a full scan: for checks, not for every block)."""
    h = hashlib.sha256()
    for table in STATE_TABLES:
        dump = canonical_rows(db, table)
        h.update(table.encode() + b"\0" + len(dump).to_bytes(8, "big") + dump)
    return h.hexdigest()
