"""`synod sim`: one ROAST signing session in the deterministic network simulator."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from synod.cli.output import print_fields
from synod.cli.progress import Progress
from synod.sim.adversary import STRATEGIES


def _duration(text: str) -> float:
    """'153ms', '0.153s' or '0.153' (seconds)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 153ms or 0.153s)")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "ms" else value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="simulate a ROAST signing session with faulty signers",
        description="Run one ROAST signing session over FROST in the deterministic network "
        "simulator, with corrupted signers following a strategy. The same seed gives the same run.",
    )
    p.add_argument("--scheme", default="bip340", choices=("bip340", "ed25519"))
    p.add_argument("-t", "--threshold", type=int, required=True)
    p.add_argument("-n", "--parties", type=int, required=True)
    p.add_argument("--malicious", type=int, default=0, help="number of corrupted signers")
    p.add_argument("--strategy", default="static", choices=STRATEGIES)
    p.add_argument("--rtt", type=_duration, default=0.153, help="round-trip time (default 153ms)")
    p.add_argument("--jitter", type=float, default=0.1, help="relative delay jitter (default 0.1)")
    p.add_argument("--loss", type=float, default=0.0, help="message loss probability")
    p.add_argument("--rotate", type=_duration, default=5.0, help="aggregator turn length (5s)")
    p.add_argument("--max-time", type=_duration, default=60.0, help="virtual time budget (60s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from synod.crypto import frost
    from synod.sim.roast import RoastRun

    t, n, f = args.threshold, args.parties, args.malicious
    problems = []
    if t < 2 or t > n:
        problems.append(f"need 2 <= t <= n (got t={t}, n={n})")
    if not 0 <= f <= n:
        problems.append(f"--malicious must be between 0 and n={n}")
    if not 0 <= args.loss < 1:
        problems.append("--loss must be in [0, 1)")
    if problems:
        print(f"synod sim: error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    progress = Progress()
    if f > n - t:
        progress.step(f"warning: {f} corrupted signers exceed n-t={n - t}; ROAST cannot finish")
    suite = frost.Ciphersuite.SECP256K1_TR if args.scheme == "bip340" else frost.Ciphersuite.ED25519
    tweak = frost.KEY_PATH if args.scheme == "bip340" else None
    progress.step(f"setting up {n} nodes (t={t}, {f} corrupted, strategy {args.strategy})")
    sim = RoastRun(
        t,
        n,
        f,
        args.strategy,
        args.seed,
        args.rtt,
        args.jitter,
        args.loss,
        args.rotate,
        args.max_time,
        suite,
        tweak,
    )
    progress.step(f"key setup: {sim.key_setup}; running")
    result = sim.execute()
    out = {
        "scheme": args.scheme,
        **result.as_dict(),
        "rtt_s": args.rtt,
        "key_setup": sim.key_setup,
    }
    if args.json:
        print(json.dumps(out))
    else:
        rows = [
            ("outcome", "signed" if result.ok else "FAILED"),
            ("sessions started", str(result.sessions_started)),
            ("successful session", str(result.success_session)),
            ("aggregator turns", str(result.aggregator_turns)),
            ("virtual elapsed", f"{result.virtual_elapsed_s:.3f} s"),
            ("messages sent/received", f"{result.messages_sent} / {result.messages_received}"),
            ("CPU", f"{result.cpu_s:.2f} s (coordinator {result.cpu_coordinator_s:.2f} s)"),
            ("culprits", ", ".join(map(str, result.culprits)) or "-"),
            ("corrupted", ", ".join(map(str, result.corrupted)) or "-"),
            ("group public key", result.group_public_key),
            ("message", result.message),
            ("signature", result.signature or "-"),
            ("dropped envelopes", ", ".join(f"{k}={v}" for k, v in result.drops.items()) or "-"),
        ]
        print_fields(rows)
    if not result.ok:
        print(f"synod sim: failed: {result.failure}", file=sys.stderr)
        return 1
    return 0
