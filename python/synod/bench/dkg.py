"""One member's cost in a real (dealerless) DKG of a large committee.

All n members' rounds run in this process, but only member 1's steps are timed, in CPU
seconds, each from what it receives as bytes: its own round 1, parsing the n − 1 round-1
packages (every commitment point decoded once), round 2 (checking the n − 1 proofs of
knowledge, making n − 1 shares) and round 3 (checking the n − 1 shares it received against
their senders' commitments, deriving its key and every member's verifying share). Member 2
also finishes, and both must derive the same public key package. The other members'
round 2 is work the bench needs (their shares for member 1), not timed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Callable, Sequence

from synod.bench.frost import SUITE_NAMES
from synod.bench.table import Row
from synod.crypto import frost


def _rss_bytes() -> int:
    """Resident memory, after handing freed heap pages back (glibc), so that a later
    difference counts what was allocated in between rather than reused memory."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def dkg_node_rows(
    sizes: Sequence[tuple[int, int]],
    suites: Sequence[frost.Ciphersuite] = tuple(SUITE_NAMES),
    crate_checks: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Row]:
    rows: list[Row] = []
    for suite in suites:
        name = SUITE_NAMES[suite]
        for t, n in sizes:
            rows += _one(suite, name, t, n, crate_checks, progress)
    return rows


def _one(
    suite: frost.Ciphersuite,
    name: str,
    t: int,
    n: int,
    crate_checks: bool,
    progress: Callable[[str], None],
) -> list[Row]:
    params = f"{t}/{n}"
    progress(f"{name} {params}: round 1 of {n} members")
    cpu_part1, first = _cpu(lambda: frost.dkg_part1(suite, 1, n, t))
    assert isinstance(first, tuple)
    round1 = {1: first}
    for i in range(2, n + 1):
        round1[i] = frost.dkg_part1(suite, i, n, t)
    wire = {i: p.to_bytes() for i, (_, p) in round1.items()}

    progress(f"{name} {params}: member 1 parses {n - 1} round-1 packages")
    rss = _rss_bytes()
    cpu_parse, received = _cpu(
        lambda: {j: frost.receive_dkg_round1_package(wire[j], suite, t) for j in wire if j != 1}
    )
    parsed_bytes = _rss_bytes() - rss
    assert isinstance(received, dict)
    # What everyone holds: the same packages (the bench shares member 1's parsed copies).
    packages = {**received, 1: frost.DkgRound1Package.from_bytes(wire[1])}

    progress(f"{name} {params}: member 1 round 2")
    cpu_part2, mine2 = _cpu(lambda: frost.dkg_part2(first[0], received))
    assert isinstance(mine2, tuple)
    secrets2 = {1: mine2[0]}
    inbox: dict[int, dict[int, frost.DkgRound2Package]] = {1: {}, 2: {1: mine2[1][2]}}
    for i in range(2, n + 1):
        if i % 100 == 0:
            progress(f"{name} {params}: round 2 of member {i}/{n} (untimed)")
        others = {j: p for j, p in packages.items() if j != i}
        s2, out = frost.dkg_part2(round1[i][0], others)
        if i == 2:
            secrets2[2] = s2
        inbox[1][i] = frost.DkgRound2Package.from_bytes(out[1].to_bytes())
        if i != 2:
            inbox[2][i] = out[2]

    progress(f"{name} {params}: member 1 round 3")
    others1 = {j: p for j, p in packages.items() if j != 1}
    cpu_part3, result = _cpu(lambda: frost.dkg_part3(secrets2[1], others1, inbox[1]))
    assert isinstance(result, tuple)
    progress(f"{name} {params}: member 2 round 3 (untimed), to compare")
    others2 = {j: p for j, p in packages.items() if j != 2}
    _, public2 = frost.dkg_part3(secrets2[2], others2, inbox[2])
    if public2 != result[1]:
        raise AssertionError("members 1 and 2 derived different public key packages")
    rows = [
        Row(name, "dkg member: round 1", params, cpu_part1, 1),
        Row(
            name,
            f"dkg member: parse {n - 1} round-1 packages",
            params,
            cpu_parse,
            1,
            f"RSS +{parsed_bytes / 2**20:.0f} MiB",
        ),
        Row(name, "dkg member: round 2", params, cpu_part2, 1),
        Row(name, "dkg member: round 3 (Horner)", params, cpu_part3, 1),
    ]
    if crate_checks:
        progress(f"{name} {params}: member 1 round 3 with the crate's checks")
        cpu_crate, crate = _cpu(
            lambda: frost.dkg_part3(secrets2[1], others1, inbox[1], crate_checks=True)
        )
        if crate != result:
            raise AssertionError("the crate's part3 concluded differently")
        rows.append(Row(name, "dkg member: round 3 (crate's checks)", params, cpu_crate, 1))
    total = cpu_part1 + cpu_parse + cpu_part2 + cpu_part3
    note = f"member's parsed round-1 inputs {parsed_bytes / 2**20:.0f} MiB"
    rows.append(Row(name, "dkg member: in all (CPU)", params, total, 1, note))
    return rows
