"""`python -m synod.bench`: crypto-core benchmarks, optionally beside the raw Rust crates.

python -m synod.bench                      # FROST + CGGMP, default sizes
python -m synod.bench --with-rust          # also run the Rust examples; adds a ratio column
python -m synod.bench --frost-sizes 3/5 --no-ecdsa
python -m synod.bench --api                # withdrawal submissions/s through the REST API
python -m synod.bench --cluster            # signing latency of a 3-of-5 loopback cluster
python -m synod.bench --worst-message      # what the worst peer message costs a receiver
python -m synod.bench --consensus          # ledger through 4 CometBFT validators vs local
python -m synod.bench --witness            # what witnessing adds: deposits, confirmations
python -m synod.bench --member             # member run to ready; a cut member to caught up
python -m synod.bench --e2e-members        # btc through the API of 5 member run services vs solo
python -m synod.bench --peer-tsslib        # threshold ECDSA beside bnb-chain/tss-lib v2
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

from synod.bench.table import Row, format_seconds, render

ROOT = Path(__file__).resolve().parents[3]


def _sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        t, _, n = part.partition("/")
        out.append((int(t), int(n)))
    return out


def _parse_seconds(text: str) -> float:
    value, unit = text.split()
    scale = {"µs": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    return float(value) * scale


def rust_rows(example: str, args: list[str]) -> dict[tuple[str, str, str], float]:
    """Run a Rust example (release) that prints `| suite | operation | t/n | median | repeats |`."""
    cmd = ["cargo", "run", "--quiet", "--release", "--example", example, "--", *args]
    out = subprocess.run(cmd, cwd=ROOT / "rust", check=True, capture_output=True, text=True).stdout
    result = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0] not in ("suite",) and not cells[0].startswith("-"):
            result[(cells[0], cells[1], cells[2])] = _parse_seconds(cells[3])
    return result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m synod.bench", description=__doc__.splitlines()[0])
    p.add_argument("--frost-sizes", default="3/5,11/15,67/100", help="t/n list for FROST")
    p.add_argument(
        "--signer-sizes",
        default="67/100,800/1000",
        help="t/n list for one ROAST signer's round 2 (FROST)",
    )
    p.add_argument(
        "--dkg-node",
        metavar="SIZES",
        help="one member's CPU in a dealerless FROST DKG, e.g. 800/1000 (both suites)",
    )
    p.add_argument(
        "--dkg-crate", action="store_true", help="with --dkg-node, also the crate's round 3"
    )
    p.add_argument("--dkg-suites", default="secp256k1-tr,ed25519", help="suites for --dkg-node")
    p.add_argument("--ecdsa-sizes", default="2/3,3/5", help="t/n list for CGGMP")
    p.add_argument("--no-frost", action="store_true")
    p.add_argument("--no-ecdsa", action="store_true")
    p.add_argument("--with-rust", action="store_true", help="also time the crates directly in Rust")
    p.add_argument("--roast", action="store_true", help="run the ROAST simulator grid instead")
    p.add_argument("--roast-sizes", default="3/5,11/15,34/50,67/100", help="t/n list for --roast")
    p.add_argument("--seeds", type=int, default=10, help="seeds per ROAST grid cell")
    p.add_argument("--roast-large", action="store_true", help="run 800-of-1000 in the simulator")
    p.add_argument("--state", action="store_true", help="state machine throughput instead")
    p.add_argument("--withdrawals", type=int, default=10_000, help="withdrawals for --state")
    p.add_argument(
        "--consensus", action="store_true", help="replicated ledger: 4 validators vs local"
    )
    p.add_argument("--consensus-withdrawals", type=int, default=1000, help="for --consensus")
    p.add_argument(
        "--witness",
        action="store_true",
        help="4 validators: latency a quorum of witnesses adds to a deposit and a confirmation",
    )
    p.add_argument("--witness-rounds", type=int, default=50, help="for --witness")
    p.add_argument(
        "--member",
        action="store_true",
        help="4 `synod member run` services: start to ready, and a cut member to caught up",
    )
    p.add_argument("--member-rounds", type=int, default=3, help="for --member")
    p.add_argument("--member-cut", type=float, default=10.0, help="seconds cut, for --member")
    p.add_argument("--e2e", action="store_true", help="end-to-end withdrawals per minute")
    p.add_argument("--per-chain", type=int, default=20, help="withdrawals per chain for --e2e")
    p.add_argument(
        "--e2e-members",
        action="store_true",
        help="Bitcoin withdrawals through the API of 5 `synod member run` services (replicated) "
        "beside the solo orderer: per minute, p50/p99 submitted to confirmed (--per-chain)",
    )
    p.add_argument("--api", action="store_true", help="submissions per second through the API")
    p.add_argument("--api-requests", type=int, default=20_000, help="submissions for --api")
    p.add_argument("--api-duration", type=float, default=30.0, help="seconds at most for --api")
    p.add_argument("--api-connections", type=int, default=16, help="connections for --api")
    p.add_argument(
        "--postgres-dsn",
        default=os.environ.get("SYNOD_BENCH_POSTGRES_DSN"),
        help="PostgreSQL server for --api (a database is created and dropped)",
    )
    p.add_argument("--transition", action="store_true", help="power transitions instead")
    p.add_argument("--utxos", type=int, default=100, help="old-key UTXOs to sweep (fresh key)")
    p.add_argument("--cluster", action="store_true", help="signing latency of member processes")
    p.add_argument("--cluster-size", default="3/5", help="t/n for --cluster")
    p.add_argument("--signatures", type=int, default=200, help="signatures per suite, --cluster")
    p.add_argument(
        "--roast-net",
        action="store_true",
        help="ROAST over gRPC/mTLS sockets with an emulated RTT, f = 0 and n - t adaptive",
    )
    p.add_argument(
        "--roast-net-sizes", default="3/5,11/15,34/50,67/100", help="t/n list for --roast-net"
    )
    p.add_argument(
        "--cluster-schemes",
        default="bip340,ed25519,ecdsa,ecdsa-pool",
        help="comma-separated schemes for --cluster (bip340, ed25519, ecdsa, ecdsa-pool)",
    )
    p.add_argument(
        "--worst-message", action="store_true", help="cost of the worst message a peer may send"
    )
    p.add_argument(
        "--peer-tsslib",
        action="store_true",
        help="threshold ECDSA from fresh primes beside bnb-chain/tss-lib v2 (Go harness)",
    )
    p.add_argument("--peer-size", default="3/5", help="t/n for --peer-tsslib")
    p.add_argument("--peer-signatures", type=int, default=3, help="signatures, --peer-tsslib")
    args = p.parse_args(argv)

    def progress(msg: str) -> None:
        print(f"  … {msg}", file=sys.stderr, flush=True)

    print(f"machine: {machine()}", file=sys.stderr)
    if args.roast_net:
        from synod.bench.roast_net import net_rows, render_net

        print(render_net(net_rows(_sizes(args.roast_net_sizes), progress=progress)))
        return 0
    if args.peer_tsslib:
        from synod.bench.peers import PeerUnavailable, tsslib_table

        (t, n), *_ = _sizes(args.peer_size)
        if not 2 <= t <= n or args.peer_signatures < 1:
            p.error("--peer-size needs 2 <= t <= n and --peer-signatures must be positive")
        try:
            print(tsslib_table(t, n, args.peer_signatures, progress))
        except PeerUnavailable as err:
            p.exit(2, f"python -m synod.bench: {err}\n")
        return 0
    if args.dkg_node:
        from synod.bench.dkg import dkg_node_rows
        from synod.crypto.frost import Ciphersuite

        sizes = _sizes(args.dkg_node)
        if any(not 2 <= t <= n for t, n in sizes):
            p.error("--dkg-node needs sizes t/n with 2 <= t <= n")
        try:
            suites = [Ciphersuite.parse(x.strip()) for x in args.dkg_suites.split(",") if x]
        except ValueError as err:
            p.error(str(err))
        print(render(dkg_node_rows(sizes, suites, args.dkg_crate, progress)))
        return 0
    if args.cluster:
        from synod.bench.cluster import cluster_latencies, render_latencies

        (t, n), *_ = _sizes(args.cluster_size)
        if not 2 <= t <= n or args.signatures < 1:
            p.error("--cluster-size needs 2 <= t <= n and --signatures must be positive")
        schemes = tuple(x.strip() for x in args.cluster_schemes.split(",") if x.strip())
        if not schemes or not set(schemes) <= {"bip340", "ed25519", "ecdsa", "ecdsa-pool"}:
            p.error("--cluster-schemes takes bip340, ed25519, ecdsa and/or ecdsa-pool")
        print(render_latencies(cluster_latencies(t, n, args.signatures, progress, schemes)))
        return 0
    if args.transition:
        from synod.bench.transition import transition_table

        print(transition_table(args.utxos, progress))
        return 0
    if args.api:
        from synod.bench.api import api_table

        if args.api_requests < 1 or args.api_duration <= 0 or args.api_connections < 1:
            p.error("--api-requests, --api-duration and --api-connections must be positive")
        print(
            api_table(
                args.api_requests,
                args.api_duration,
                args.api_connections,
                args.postgres_dsn,
                progress,
            )
        )
        return 0
    if args.worst_message:
        from synod.bench.worst import worst_rows

        print(render(worst_rows(_sizes(args.frost_sizes), progress)))
        return 0
    if args.e2e:
        from synod.bench.e2e import e2e_table

        print(e2e_table(args.per_chain, progress))
        return 0
    if args.e2e_members:
        from synod.bench.e2e import e2e_members_table

        print(e2e_members_table(args.per_chain, progress))
        return 0
    if args.member:
        from synod.bench.member import member_table

        if args.member_rounds < 1 or not 0 < args.member_cut <= 600:
            p.error("--member-rounds must be positive and --member-cut within (0, 600]")
        print(member_table(args.member_rounds, args.member_cut, progress=progress))
        return 0
    if args.witness:
        from synod.bench.witness import witness_table

        if args.witness_rounds < 1:
            p.error("--witness-rounds must be positive")
        print(witness_table(args.witness_rounds, progress=progress))
        return 0
    if args.consensus:
        from synod.bench.consensus import consensus_table

        print(consensus_table(args.consensus_withdrawals, progress=progress))
        return 0
    if args.state:
        from synod.bench.state import state_table

        print(state_table(args.withdrawals, progress))
        return 0
    if args.roast or args.roast_large:
        from synod.bench.roast import grid_rows, large_rows, render_grid

        if args.roast:
            print(render_grid(grid_rows(_sizes(args.roast_sizes), args.seeds, progress=progress)))
        if args.roast_large:
            print(large_rows(progress=progress))
        return 0
    rows: list[Row] = []
    raw: dict[tuple[str, str, str], float] = {}
    if not args.no_frost:
        from synod.bench.frost import frost_rows, signer_rows

        rows += frost_rows(_sizes(args.frost_sizes), progress)
        rows += signer_rows(_sizes(args.signer_sizes), progress)
        if args.with_rust:
            progress("Rust baseline: bench_frost")
            raw.update(rust_rows("bench_frost", [args.frost_sizes, args.signer_sizes]))
    if not args.no_ecdsa:
        from synod.bench.ecdsa import ECDSA_PRIMES, ecdsa_rows

        rows += ecdsa_rows(_sizes(args.ecdsa_sizes), progress)
        if args.with_rust:
            progress("Rust baseline: bench_ecdsa")
            raw.update(rust_rows("bench_ecdsa", [str(ECDSA_PRIMES), args.ecdsa_sizes]))
    if raw:
        rows = [
            Row(
                r.suite,
                r.operation,
                r.params,
                r.seconds,
                r.repeats,
                _ratio_note(r, raw.get((r.suite, r.operation, r.params))),
            )
            for r in rows
        ]
    print(render(rows))
    return 0


def _ratio_note(row: Row, rust: float | None) -> str:
    if rust is None:
        return row.note
    return f"rust {format_seconds(rust)}, python/rust {row.seconds / rust:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
