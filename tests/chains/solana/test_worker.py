"""End to end: the withdraw worker and the custody state machine drive SOL and SPL-token
withdrawals through FROST 2-of-3 signing and the Solana adapter over LiteSVM, including a
signing session that outlives its blockhash (re-templated only on the unspendable proof)."""

from __future__ import annotations

from pathlib import Path

from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey

from synod.chains.solana.adapter import SolanaAdapter
from synod.chains.solana.tx import SolanaTransfer, verify_message
from synod.runtime.consensus import SoloConsensus
from synod.runtime.interfaces import BlockingSigner
from synod.runtime.journal import Journal
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.machine import BALANCE_FIELDS, CONFIRMED, SIGNING, Ledger, Withdrawal
from synod.state.transactions import DepositCredit, WithdrawRequest

from .conftest import Group, create_token, token_balance


class FrostSolanaSigner(BlockingSigner):
    """Gets the message from the adapter, checks it against the recorded template (as every
    co-signer would), and signs it 2-of-3. Can let the first blockhash expire mid-session."""

    def __init__(
        self, adapter: SolanaAdapter, group: Group, svm: LiteSVM, expire_first: bool = False
    ) -> None:
        super().__init__()
        self.adapter, self.group, self.svm = adapter, group, svm
        self.expire_first = expire_first
        self.messages: list[bytes] = []

    def sign(self, w: Withdrawal, session_id: str) -> str:
        assert w.template is not None
        prepared = self.adapter.prepare(w)
        verify_message(prepared.message, w.template, self.group.key, self.adapter.tokens)
        sig = self.group.sign(prepared.message, (1, 2) if len(self.messages) % 2 else (2, 3))
        self.messages.append(prepared.message)
        if self.expire_first and len(self.messages) == 1:
            self.svm.expire_blockhash()
        return sig.hex()


def run(
    tmp_path: Path, svm: LiteSVM, group: Group, expire_first: bool
) -> tuple[Ledger, dict[str, Pubkey], FrostSolanaSigner]:
    token = create_token(svm, group.pubkey, supply=9_000_000, decimals=6)
    adapter = SolanaAdapter(svm, group.key, {"USDC": token}, confirmations=32)
    signer = FrostSolanaSigner(adapter, group, svm, expire_first)
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
    policy = WorkerPolicy(confirmations={"sol": 32}, backoff_s=0)
    worker = WithdrawWorker(ledger, consensus, {"sol": signer}, {"sol": adapter}, policy)
    ledger.apply(DepositCredit("sol", "SOL", 5 * 10**9, "deposit-sol", 1))
    ledger.apply(DepositCredit("sol", "USDC", 9_000_000, "deposit-usdc", 2))
    to = {"SOL": Pubkey.new_unique(), "USDC": Pubkey.new_unique()}
    ledger.apply(WithdrawRequest("req-1", "sol", "SOL", str(to["SOL"]), 3_000_000))
    ledger.apply(WithdrawRequest("req-2", "sol", "USDC", str(to["USDC"]), 4_000_000))
    lamports_before = svm.get_balance(group.pubkey)
    for _ in range(40):
        worker.step()
        if all(w.status == CONFIRMED for w in ledger.withdrawals()):
            break
    assert all(w.status == CONFIRMED for w in ledger.withdrawals())
    assert svm.get_balance(to["SOL"]) == 3_000_000
    assert token_balance(svm, to["USDC"], token) == 4_000_000
    assert token_balance(svm, group.pubkey, token) == 5_000_000
    for (_c, _a), b in ledger.balances().items():
        assert b["deposited"] == sum(b[k] for k in BALANCE_FIELDS[1:])
    # The fees the ledger charged cover what the chain took (fees and the new token account's
    # rent), so the ledger never claims more SOL than the group account holds.
    spent = lamports_before - svm.get_balance(group.pubkey) - 3_000_000
    assert spent > 0 and ledger.balance("sol", "SOL")["fees"] >= spent
    return ledger, to, signer


def test_worker_pays_sol_and_token_withdrawals(tmp_path: Path, svm: LiteSVM, group: Group) -> None:
    _, _, signer = run(tmp_path, svm, group, expire_first=False)
    assert len(signer.messages) == 2  # one session each


def test_blockhash_expiry_during_signing_is_retried_once(
    tmp_path: Path, svm: LiteSVM, group: Group
) -> None:
    """Both withdrawals' StartSign fixed the first blockhash; it expired while the first was
    being signed, so each template was signed once under it (dead), proven unspendable,
    re-templated, and signed once under the next blockhash, which the ledger agreed anew."""
    ledger, _, signer = run(tmp_path, svm, group, expire_first=True)
    for w in ledger.withdrawals():
        assert w.attempt == 1 and "unspendable" in (w.reason or "")
    hashes = [str(Message.from_bytes(m).recent_blockhash) for m in signer.messages]
    assert len(hashes) == 4 and hashes[0] == hashes[1] != hashes[2] == hashes[3]
    assert {w.sign_context for w in ledger.withdrawals()} == {hashes[2]}


def test_members_workers_sign_the_blockhash_the_ledger_agreed(
    tmp_path: Path, svm: LiteSVM, group: Group
) -> None:
    """Two members' workers over one agreed ledger state, each with its own adapter record:
    member A's StartSign fixes A's blockhash; member B, whose node has moved on to a newer
    blockhash, builds exactly A's message (so both sign one message), and a member's signing
    view refuses the same transfer under any other blockhash. The agreed message has
    expired by then, so B proves it dead and pays under a newly agreed one, exactly once."""
    from synod.chains.signing_view import parse

    rule = parse({"version": 1, "chains": {"sol": {"group_key": group.key.hex()}}})["sol"]
    ledger = Ledger(SqliteDatabase(tmp_path / "ledger.db"))
    consensus = SoloConsensus(ledger, Journal(tmp_path / "journal.db"))
    policy = WorkerPolicy(confirmations={"sol": 32}, backoff_s=0)
    adapters = {m: SolanaAdapter(svm, group.key, confirmations=32) for m in "AB"}
    workers = {
        m: WithdrawWorker(
            ledger, consensus, {"sol": FrostSolanaSigner(a, group, svm)}, {"sol": a}, policy
        )
        for m, a in adapters.items()
    }
    ledger.apply(DepositCredit("sol", "SOL", 10**9, "deposit-sol", 1))
    to = Pubkey.new_unique()
    ledger.apply(WithdrawRequest("req-1", "sol", "SOL", str(to), 3_000_000))
    while ledger.withdrawals()[0].status != SIGNING:
        workers["A"].step()
    w = ledger.withdrawals()[0]
    agreed = str(svm.latest_blockhash())
    assert w.sign_context == agreed
    svm.expire_blockhash()  # B's node now serves a newer blockhash
    message_b = adapters["B"].prepare(w).message
    assert message_b == adapters["A"].prepare(w).message
    assert str(Message.from_bytes(message_b).recent_blockhash) == agreed
    assert rule(w, 0, message_b)
    latest = SolanaTransfer.build(w.template or "", group.key, svm.latest_blockhash())
    assert not rule(w, 0, latest.message_bytes())
    for _ in range(40):
        workers["B"].step()
        if ledger.withdrawals()[0].status == CONFIRMED:
            break
    w = ledger.withdrawals()[0]
    assert w.status == CONFIRMED and w.attempt == 1 and "unspendable" in (w.reason or "")
    assert w.sign_context not in (None, agreed)
    assert svm.get_balance(to) == 3_000_000
