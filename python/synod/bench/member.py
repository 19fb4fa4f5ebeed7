"""Members as services: from `synod member run` to ready, and a cut-off member from its link
restored to caught up.

Four members on the replicated ledger, made by the enrolment steps (`synod.member.local`, the
keystores with the production Argon2id cost), each started as one `synod member run` process.
Run as root, each member is in a network namespace of its own (`synod.bench.netns`) and the
cut is real: member 4's link is set down for `cut_s` seconds while the other three make blocks,
then up again, and the time is taken until its replica holds the others' height with the same
app hash. Without root the members share loopback and the cut is not measured.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from synod.bench.netns import Hosts, unavailable
from synod.chains.localnode import binary_dir
from synod.consensus.localnet import free_ports
from synod.member.local import (
    LocalMember,
    Site,
    app_hashes,
    create_members,
    is_ready,
    start_member,
    stop_members,
)

Progress = Callable[[str], None]
MEMBERS = (1, 2, 3, 4)
CUT = 4
DEADLINE_S = 300.0


def _height(member: LocalMember) -> int:
    return max(app_hashes(member), default=0)


def _until(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > deadline_s:
            raise TimeoutError(f"{what}: not within {deadline_s:g} s")
        time.sleep(0.05)
    return time.monotonic() - start


def _inside(hosts: Hosts | None, member_id: int) -> Callable[[list[str]], list[str]]:
    if hosts is None:
        return lambda argv: argv
    return lambda argv: hosts.argv(member_id, argv)


def _one_run(
    root: Path, cometbft: Path, hosts: Hosts | None, cut_s: float, progress: Progress
) -> tuple[list[float], float | None]:
    if hosts is not None:
        sites = [Site(i, hosts.address(i)) for i in MEMBERS]
    else:
        sites = [Site(i, "127.0.0.1", *free_ports(5)) for i in MEMBERS]
    members = create_members(root, sites, 3, cometbft, "synod-bench", timeout_commit_ms=500)
    started = time.monotonic()
    procs = [start_member(m, _inside(hosts, m.member_id)) for m in members]
    try:
        ready: dict[int, float] = {}

        def all_ready() -> bool:
            for m in members:
                if m.member_id not in ready and is_ready(m, 1.0):
                    ready[m.member_id] = time.monotonic() - started
            return len(ready) == len(members)

        _until(all_ready, "every member ready")
        progress(f"ready after {', '.join(f'{ready[i]:.1f}' for i in MEMBERS)} s")
        if hosts is None:
            return [ready[i] for i in MEMBERS], None
        cut, others = members[CUT - 1], [m for m in members if m.member_id != CUT]
        hosts.cut(CUT)
        try:
            time.sleep(cut_s)
        finally:
            hosts.restore(CUT)
        restored = time.monotonic()
        target = max(_height(m) for m in others)
        _until(lambda: _height(cut) >= target, "the cut member catching up")
        caught_up = time.monotonic() - restored
        hashes = {app_hashes(m).get(target) for m in members}
        if len(hashes) != 1:
            raise RuntimeError(f"replicas differ at height {target}: {hashes}")
        progress(f"cut {cut_s:g} s; caught up to height {target} {caught_up:.2f} s after the "
                 "link came back")  # fmt: skip
        return [ready[i] for i in MEMBERS], caught_up
    finally:
        stop_members(procs)


def member_table(rounds: int = 3, cut_s: float = 10.0, progress: Progress = print) -> str:
    cometbft = binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
    why = unavailable()
    where = "4 network namespaces" if why is None else f"loopback ({why})"
    progress(f"members on {where}")
    to_ready: list[float] = []
    catch_up: list[float] = []
    for r in range(rounds):
        with tempfile.TemporaryDirectory(prefix="synod-bench-member-") as tmp:
            hosts = Hosts(len(MEMBERS)) if why is None else None
            try:
                ready, caught = _one_run(Path(tmp), cometbft, hosts, cut_s, progress)
            finally:
                if hosts is not None:
                    hosts.close()
        to_ready += ready
        if caught is not None:
            catch_up.append(caught)
        progress(f"round {r + 1}/{rounds} done")
    lines = [
        "| measure | where | samples | p50 | max |",
        "|---|---|---|---|---|",
        f"| `member run` to ready (replica caught up, keystore open, t-1 links) | {where} | "
        f"{len(to_ready)} | {statistics.median(to_ready):.2f} s | {max(to_ready):.2f} s |",
    ]
    if catch_up:
        lines.append(
            f"| cut {cut_s:g} s: link restored to caught up (same app hash) | {where} | "
            f"{len(catch_up)} | {statistics.median(catch_up):.2f} s | {max(catch_up):.2f} s |"
        )
    else:
        lines.append(f"| cut: link restored to caught up | {where} | 0 | needs root | |")
    return "\n".join(lines)
