"""Threshold ECDSA beside the peer a user would pick instead: bnb-chain/tss-lib v2.

One run times both on this machine, one after the other, from fresh primes:

- synod: every party's Paillier safe primes (`ecdsa.generate_primes`, parties side by side
  on the machine's cores), CGGMP aux info, keygen, and interactive signing, with all parties
  in this process on one thread (`ecdsa.local_*`);
- tss-lib: the Go harness in ``bench/peers/tsslib`` (built from the Go module proxy on first
  use), with pre-parameters generated for every party in parallel and every party on its
  own goroutines.

The two protocols are not the same size: cggmp21 here uses 3072-bit Paillier moduli
(`SecurityLevel128`), tss-lib 2048-bit ones, and tss-lib's pre-parameters include what CGGMP
calls aux info without its proofs, which tss-lib's keygen then carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synod.crypto import ecdsa

Progress = Callable[[str], None]
HARNESS = Path(__file__).resolve().parents[3] / "bench" / "peers" / "tsslib"
DIGEST = hashlib.sha256(b"synod peer benchmark").digest()


class PeerUnavailable(RuntimeError):
    """The peer's harness cannot be built here (no Go, or the module proxy refused)."""


def _cache() -> Path:
    """The cache root the Go build scripts use (`scripts/go-install.sh`), then `peers`."""
    given = os.environ.get("SYNOD_CACHE_DIR")
    root = (
        Path(given)
        if given
        else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synod"
    )
    return root / "peers"


def build_tsslib(progress: Progress) -> Path:
    """The harness binary, built (or rebuilt when its source changed) with the pinned go.sum."""
    go = shutil.which("go")
    if go is None:
        raise PeerUnavailable("no go command on PATH (the tss-lib harness is Go)")
    out = _cache() / "tsslib-bench"
    sources = [HARNESS / name for name in ("main.go", "go.mod", "go.sum")]
    if out.exists() and all(s.stat().st_mtime <= out.stat().st_mtime for s in sources):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    progress("building the tss-lib v2 harness (go build; first time about a minute)")
    env = {**os.environ, "GOFLAGS": "-mod=readonly"}
    done = subprocess.run(
        [go, "build", "-o", str(out), "."], cwd=HARNESS, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise PeerUnavailable(f"go build failed: {done.stderr.strip()[-500:]}")
    return out


def run_tsslib(binary: Path, t: int, n: int, signatures: int) -> dict[str, Any]:
    done = subprocess.run(
        [str(binary), "-t", str(t), "-n", str(n), "-signatures", str(signatures)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode:
        raise PeerUnavailable(f"tss-lib harness failed: {done.stderr.strip()[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_synod(t: int, n: int, signatures: int, progress: Progress) -> dict[str, Any]:
    def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
        start = time.perf_counter()
        value = fn()
        return time.perf_counter() - start, value

    progress(f"synod: safe primes for {n} parties")
    primes_s, primes = clock(lambda: ecdsa.generate_primes(n))
    progress(f"synod: aux info {t}/{n}")
    aux_s, aux = clock(lambda: ecdsa.local_aux_info(n, primes))
    progress(f"synod: keygen {t}/{n}")
    keygen_s, shares = clock(lambda: ecdsa.local_keygen(t, n, aux))
    sign_s = []
    for k in range(signatures):
        progress(f"synod: interactive signing {k + 1}/{signatures}")
        seconds, _ = clock(lambda: ecdsa.local_sign(shares, list(range(t)), DIGEST))
        sign_s.append(seconds)
    return {"primes_s": primes_s, "aux_s": aux_s, "keygen_s": keygen_s, "sign_s": sign_s}


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def tsslib_table(
    t: int = 3, n: int = 5, signatures: int = 3, progress: Progress = lambda _: None
) -> str:
    binary = build_tsslib(progress)
    mine = run_synod(t, n, signatures, progress)
    progress(f"tss-lib v2: pre-parameters, keygen, {signatures} signatures at {t}/{n}")
    peer = run_tsslib(binary, t, n, signatures)
    ours_setup = mine["primes_s"] + mine["aux_s"] + mine["keygen_s"]
    peer_setup = peer["pre_params_s"] + peer["keygen_s"]
    ours_sign = statistics.median(mine["sign_s"])
    peer_sign = statistics.median(peer["sign_s"])
    rows = [
        (
            "safe primes / pre-parameters (all parties in parallel)",
            mine["primes_s"],
            peer["pre_params_s"],
        ),
        ("aux info (synod) / in pre-parameters (tss-lib)", mine["aux_s"], None),
        ("keygen", mine["keygen_s"], peer["keygen_s"]),
        ("**setup from fresh primes** (sum of the above)", ours_setup, peer_setup),
        (f"interactive signing, median of {signatures}", ours_sign, peer_sign),
    ]
    lines = [
        f"| {t}/{n} | synod (cggmp21 0.6.3) | tss-lib v2.0.2 | synod / tss-lib |",
        "|---|---|---|---|",
    ]
    for name, ours, theirs in rows:
        ratio = f"{ours / theirs:.2f}×" if theirs else "-"
        lines.append(f"| {name} | {_s(ours)} | {_s(theirs) if theirs else '-'} | {ratio} |")
    lines.append(f"| Paillier modulus | 3072 bits | {peer['paillier_bits']} bits | |")
    return "\n".join(lines)
