"""ROAST among production `SignerNode`s linked by gRPC over mutual TLS (the `--roast-net`
benchmark's harness, small): with the simulator's adaptive attacker corrupting one signer of
each new sub-session up to f = n - t, the members still produce a signature that verifies,
after at least f + 1 sub-sessions, as in the simulator."""

from __future__ import annotations

from pathlib import Path

from synod.bench.roast_net import run_case


def test_adaptive_attacker_over_real_sockets(tmp_path: Path) -> None:
    case = run_case(3, 5, 2, rtt=0.01, seed=1, workdir=tmp_path, progress=lambda _m: None)
    assert case.sub_sessions >= case.f + 1  # one withholder in each of the first f
    assert case.virtual_sub_sessions >= case.f + 1
    assert case.wall_s > 0 and case.floor_s == 3 * 0.01


def test_no_attacker_signs_in_one_sub_session(tmp_path: Path) -> None:
    case = run_case(3, 5, 0, rtt=0.01, seed=2, workdir=tmp_path, progress=lambda _m: None)
    assert case.sub_sessions >= 1 and case.f == 0
