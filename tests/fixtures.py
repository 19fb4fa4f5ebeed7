"""Shared test data and records: the TEST-ONLY CGGMP primes and aux info (see data/README.md),
and withdrawal records with sensible defaults."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from synod.crypto import ecdsa
from synod.state.machine import Withdrawal

DATA = Path(__file__).parent / "data"
PRIMES_FILE = DATA / "cggmp_primes.json"
AUX_FILE = DATA / "cggmp_aux_info.json"


def load_primes() -> list[ecdsa.Primes]:
    return ecdsa.load_primes(PRIMES_FILE)


@functools.cache
def _aux_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(AUX_FILE.read_text())["aux_info"]
    return doc


def stored_aux(n: int) -> list[ecdsa.AuxInfo]:
    """Aux info for n parties (2..10), made earlier by the real protocol from the stored primes:
    one run costs about 2.8 s × n² here, too slow to repeat in every test."""
    return [
        ecdsa.AuxInfo.from_raw(json.dumps(a, separators=(",", ":")).encode())
        for a in _aux_doc()[str(n)]
    ]


def withdrawal(**fields: Any) -> Withdrawal:
    """A withdrawal record as the ledger returns it; override any field."""
    defaults: dict[str, Any] = {
        "withdraw_id": "w1",
        "seq": 1,
        "request_id": "r1",
        "chain": "btc",
        "asset": "BTC",
        "to": "x",
        "amount": 5,
        "status": "SIGNING",
        "fee": 1,
        "template_hash": "h",
        "template": "{}",
        "session_id": "s1",
        "signature_ref": None,
        "txid": None,
        "height": None,
        "sessions": 1,
        "attempt": 0,
        "reason": None,
    }
    return Withdrawal(**{**defaults, **fields})
