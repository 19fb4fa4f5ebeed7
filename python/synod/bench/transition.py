"""Power transitions: how long a full handover takes and how long the switch window is.

Each case runs the production pieces in one process: a SQLite ledger, the
`TransitionWorker`, and the simulated committee (`synod.sim.committee`) running the
reshare or DKG sessions over the simulated network (RTT 153 ms) for the BIP340 key
(Ed25519 costs the same again), the new committee's proof signature checked by an
independent verifier, and old shares erased at the end. The outgoing committee of the
100-member cases is dealt by the import tool (as the ROAST simulator does above 30
members); every handover itself is a real reshare or DKG over the simulated network.
With a fresh key the ledger holds Bitcoin UTXOs at the old key, swept in batches: each
sweep is reserved, signed by ROAST among the old committee and recorded; the bench
records it broadcast and confirmed at once, so the window excludes the chain's own
confirmation time (add `confirmations` blocks).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from synod.bench.table import format_seconds
from synod.crypto import frost
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.transition import TransitionPolicy, TransitionWorker
from synod.sim.committee import SimCommittee, message_digest
from synod.sim.roast import committee_keys
from synod.state.db import SqliteDatabase
from synod.state.machine import RESERVED, Ledger
from synod.state.transactions import (
    Broadcast,
    Confirm,
    DepositCredit,
    Signed,
    SignerSetUpdate,
    StartSign,
)
from synod.state.transition import Phase, TransitionRules

CASES = (
    ("3-of-5 -> 4-of-7", (3, 5), (4, 7, 2)),
    ("67-of-100 -> 67-of-100, 20 replaced", (67, 100), (67, 100, 80)),
)
"""(label, (old t, old n), (new t, new n, members kept))."""


def _members(n: int, keep: int, old: tuple[int, ...]) -> tuple[int, ...]:
    kept = old[len(old) - keep :]
    fresh = tuple(range(max(old) + 1, max(old) + 1 + n - keep))
    return tuple(sorted(kept + fresh))


def run_case(
    workdir: Path,
    old: tuple[int, int],
    new: tuple[int, int, int],
    mode: str,
    utxos: int,
    progress: Callable[[str], None],
) -> dict[str, float]:
    ledger = Ledger(SqliteDatabase(workdir / "ledger.db"), rules=TransitionRules(sweep_batch=25))
    consensus = SoloConsensus(ledger, Journal(workdir / "journal.db"))
    committee = SimCommittee(schemes=("bip340",), deadline=600.0)
    if old[1] > 30:
        keys, public, _ = committee_keys(frost.Ciphersuite.SECP256K1_TR, old[0], old[1])
        committee.dealt[1] = {"bip340": (keys, public)}

    def now_ms() -> int:
        return int(time.perf_counter() * 1000)

    def address_for(chain: str, scheme: str, key: bytes) -> dict[str, str]:
        output = committee.public_for(scheme, key).group_public_key(frost.KEY_PATH)
        return {"address": "new:" + output.hex()[:16], "script": "5120" + output.hex()}

    worker = TransitionWorker(
        ledger,
        consensus,
        committee,
        address_for,
        TransitionPolicy(
            frost_handover=mode, chains=("btc",) if utxos else (), schemes=("bip340",)
        ),
        clock_ms=now_ms,
    )
    old_ids = tuple(range(1, old[1] + 1))
    ledger.apply(SignerSetUpdate(old_ids, old[0], "genesis"))
    while ledger.transitions.active_epoch() != 1:
        worker.step()
    script = "5120" + committee.public[(1, "bip340")].group_public_key(frost.KEY_PATH).hex()
    for i in range(utxos):
        ledger.apply(DepositCredit("btc", "BTC", 100_000, f"{i + 1:064x}:0", 1, script))
    signer = committee.signer("bip340", message_digest, frost.KEY_PATH)
    progress(f"{mode}: {old[0]}-of-{old[1]} -> {new[0]}-of-{new[1]}")
    start = time.perf_counter()
    ledger.apply(SignerSetUpdate(_members(new[1], new[2], old_ids), new[0], "bench"))
    sweeps = 0
    while ledger.transitions.transition(2).phase is not Phase.ACTIVE:
        worker.step()
        for w in ledger.withdrawals(RESERVED, "btc"):
            sid = hashlib.sha256(f"sweep/{w.withdraw_id}".encode()).hexdigest()[:32]
            ledger.apply(StartSign(w.withdraw_id, sid, attempt=w.attempt))
            ref = signer.sign(ledger.withdrawal(w.withdraw_id), sid)
            ledger.apply(Signed(w.withdraw_id, sid, ref, attempt=w.attempt))
            txid = hashlib.sha256(ref.encode()).hexdigest()
            ledger.apply(Broadcast(w.withdraw_id, txid, attempt=w.attempt))
            ledger.apply(Confirm(w.withdraw_id, txid, 2, attempt=w.attempt))
            sweeps += 1
    total = time.perf_counter() - start
    t = ledger.transitions.transition(2)
    virtual = sum(r.virtual_s for r in committee.records if r.epoch == 2)
    return {
        "total_s": total,
        "window_s": (t.switch_window_ms or 0) / 1000,
        "virtual_s": virtual,
        "sweeps": sweeps,
    }


def transition_table(utxos: int = 100, progress: Callable[[str], None] = lambda _: None) -> str:
    lines = [
        "| handover | mode | full transition (wall) | switch window (wall) "
        "| simulated network time of the ceremonies | Bitcoin sweeps |",
        "|---|---|---|---|---|---|",
    ]
    for label, old, new in CASES:
        for mode in ("reshare", "fresh"):
            with tempfile.TemporaryDirectory(prefix="synod-bench-") as tmp:
                r = run_case(Path(tmp), old, new, mode, utxos if mode == "fresh" else 0, progress)
            sweeps = f"{int(r['sweeps'])} ({utxos} UTXOs)" if mode == "fresh" else "none"
            lines.append(
                f"| {label} | {mode} | {format_seconds(r['total_s'])} | "
                f"{format_seconds(r['window_s'])} | {r['virtual_s']:.1f} s | {sweeps} |"
            )
    return "\n".join(lines)
