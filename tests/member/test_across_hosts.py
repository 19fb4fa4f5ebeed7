"""Members on separate hosts: each `synod member run` in its own network namespace with its own
address, set up by the enrolment steps with those addresses (nothing on 127.0.0.1 between
members, no loopback settings in CometBFT). All four become ready; one member's link is cut:
the other three go on making blocks and the cut member stops being ready; the link restored,
it catches up and its replica's app hash equals the others'. Needs root (skipped with the
reason otherwise; CI sets SYNOD_REQUIRE_NETNS=1 and requires it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from synod.bench.netns import Hosts, unavailable
from synod.member.local import (
    LocalMember,
    Site,
    app_hashes,
    create_members,
    is_ready,
    start_member,
    stop_members,
)
from tests.member.helpers import wait_for
from tests.node.helpers import FAST_KDF

pytestmark = pytest.mark.cometbft
MEMBERS = (1, 2, 3, 4)
CUT = 4


def height(member: LocalMember) -> int:
    return max(app_hashes(member), default=0)


@pytest.fixture(scope="module")
def hosts() -> Iterator[Hosts]:
    why = unavailable()
    if why is not None:
        if os.environ.get("SYNOD_REQUIRE_NETNS") == "1":
            pytest.fail(f"SYNOD_REQUIRE_NETNS=1 but {why}")
        pytest.skip(why)
    made = Hosts(len(MEMBERS))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def members(
    hosts: Hosts, cometbft: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[LocalMember]]:
    root = tmp_path_factory.mktemp("hosts")
    sites = [Site(i, hosts.address(i)) for i in MEMBERS]  # the same ports on every host
    local = create_members(root, sites, 3, cometbft, "synod-hosts", FAST_KDF)
    procs = [start_member(m, lambda argv, i=m.member_id: hosts.argv(i, argv)) for m in local]
    try:
        yield local
    finally:
        stop_members(procs)


def test_members_on_their_own_hosts_become_ready(members: list[LocalMember]) -> None:
    wait_for(lambda: all(is_ready(m) for m in members), "every member ready", 180)
    wait_for(lambda: all(height(m) >= 3 for m in members), "three blocks on every replica")


def test_a_cut_member_catches_up_and_agrees_by_app_hash(
    hosts: Hosts, members: list[LocalMember]
) -> None:
    cut = members[CUT - 1]
    others = [m for m in members if m is not cut]
    hosts.cut(CUT)
    try:
        wait_for(lambda: not is_ready(cut, 1.0), "the cut member no longer ready", 60)
        start = max(height(m) for m in others)
        wait_for(lambda: min(height(m) for m in others) >= start + 3, "blocks without it")
        assert height(cut) < min(height(m) for m in others)
    finally:
        hosts.restore(CUT)
    target = max(height(m) for m in others)
    wait_for(lambda: height(cut) >= target, "the cut member catching up", 180)
    hashes = [app_hashes(m)[target] for m in members]
    assert len(set(hashes)) == 1, hashes
    wait_for(lambda: is_ready(cut), "the restored member ready again (linked, caught up)", 120)


def test_the_member_bench_measures_ready_and_catch_up(hosts: Hosts) -> None:
    """`python -m synod.bench --member` at its smallest (no timing asserted): one round in
    namespaces of its own, both rows measured."""
    from synod.bench.member import member_table

    table = member_table(rounds=1, cut_s=2.0, progress=lambda _msg: None)
    rows = table.splitlines()[2:]
    assert len(rows) == 2 and all("4 network namespaces" in r for r in rows), table
    assert "needs root" not in table
