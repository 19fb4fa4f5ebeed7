"""`synod cluster up|status|down`: the committee's member processes on this machine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synod.cli.progress import Progress


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cluster",
        help="start, inspect or stop the local member processes",
        description="Manage one `synod node run` process per member directory of a committee "
        "created by `synod committee init`. Each member logs to DIR/node-<i>/node.log. A "
        "committee made with --validators also has, per member, a CometBFT validator and the "
        "ledger application over the member's replica DIR/node-<i>/ledger.db, which the "
        "member reads as its ledger view (logs in DIR/ledger/member<i>/).",
    )
    actions = p.add_subparsers(dest="cluster_command", required=True, metavar="{up,status,down}")
    up = actions.add_parser(
        "up",
        help="start every member that is not running",
        description="Start every member not running yet, detached, and wait until each is "
        "listening (or report the one that failed, with its log).",
    )
    up.add_argument("--dir", required=True, type=Path, help="the committee directory")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.add_argument(
        "--presign-target",
        type=int,
        help="each member's presignature pool target per ECDSA key (synod node run "
        "--presign-target; 0 turns the pools off)",
    )
    up.add_argument(
        "--adhoc-signing",
        action="store_true",
        help="DEVELOPMENT TOOL: members without a ledger sign operators' ad-hoc messages "
        "(synod sign); without it they sign nothing",
    )
    up.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    up.set_defaults(run=run_up)
    status = actions.add_parser(
        "status",
        help="show each member's process, links and drop counters",
        description="Show each member: running or not, its pid, how many peers it is linked "
        "to, and its transport and router drop counters.",
    )
    status.add_argument("--dir", required=True, type=Path, help="the committee directory")
    status.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    status.set_defaults(run=run_status)
    down = actions.add_parser(
        "down",
        help="stop every member (SIGTERM, then SIGKILL after --timeout)",
        description="Send SIGTERM to every running member and wait until it has exited; a "
        "member still running after --timeout seconds gets SIGKILL.",
    )
    down.add_argument("--dir", required=True, type=Path, help="the committee directory")
    down.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    down.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    down.set_defaults(run=run_down)


def _fail(command: str, message: str) -> int:
    print(f"synod cluster {command}: error: {message}", file=sys.stderr)
    return 2


def _load(command: str, root: Path) -> list[tuple[int, Path]] | None:
    from synod.node.local_cluster import member_dirs
    from synod.node.manifest import ManifestError

    try:
        return member_dirs(root)
    except ManifestError as err:
        _fail(command, str(err))
        return None


def run_up(args: argparse.Namespace) -> int:
    from synod.node.local_cluster import log_tail, start_members, start_validators, validators

    members = _load("up", args.dir)
    if members is None:
        return 2
    progress = Progress()
    extra: dict[int, list[str]] = {}
    net = validators(args.dir)
    if net is not None:  # the replicated ledger first: each member reads its own replica
        try:
            extra = start_validators(net, members, progress.step)
        except RuntimeError as err:
            print(err, file=sys.stderr)
            return 1
    if args.presign_target is not None:
        if args.presign_target < 0:
            return _fail("up", "--presign-target must not be negative")
        pool = ["--presign-target", str(args.presign_target)]
        extra = {m: [*extra.get(m, []), *pool] for m, _ in members}
    if args.adhoc_signing:
        if net is not None:
            return _fail("up", "--adhoc-signing is for members without a ledger")
        extra = {m: [*extra.get(m, []), "--adhoc-signing"] for m, _ in members}
    outcome = start_members(members, args.timeout, extra, progress=progress.step)
    result = {"started": outcome.started, "failed": {str(k): v for k, v in outcome.failed.items()}}
    if args.json:
        print(json.dumps(result))
    dirs = dict(members)
    for member_id, why in sorted(outcome.failed.items()):
        print(
            f"member {member_id}: {why}; last log lines ({dirs[member_id]}/node.log):",
            file=sys.stderr,
        )
        print(log_tail(dirs[member_id]), file=sys.stderr)
    if outcome.failed:
        return 1
    if net is not None:
        try:
            net.wait_height(1, deadline_s=args.timeout)
        except (RuntimeError, TimeoutError) as err:
            print(f"validators: {err}", file=sys.stderr)
            return 1
        progress.step("validators: blocks are being made")
    if not args.json:
        print(f"{len(members)} members running ({len(outcome.started)} started)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from synod.node.local_cluster import read_status, validators
    from synod.node.process import running_pid

    members = _load("status", args.dir)
    if members is None:
        return 2
    net = validators(args.dir)
    rows = []
    for member_id, directory in members:
        height = None
        if net is not None and net.detached_pids(member_id):
            height = net.height(member_id)
        pid = running_pid(directory)
        doc = read_status(directory) if pid is not None else {}
        peers = doc.get("peers", {}) if doc.get("pid") == pid else {}
        rows.append(
            {
                "id": member_id,
                "running": pid is not None,
                "pid": pid,
                "state": doc.get("state", "stopped") if pid is not None else "stopped",
                "endpoint": doc.get("endpoint"),
                "peers": peers,
                "linked": sum(1 for v in peers.values() if v == "connected"),
                "transport": doc.get("transport", {}),
                "router": doc.get("router", {}),
                "ledger_height": height,
                "presignatures": doc.get("presignatures", {}) if pid is not None else {},
            }
        )
    if args.json:
        print(json.dumps({"members": rows}))
        return 0
    for r in rows:
        drops = {**r["transport"], **{f"router.{k}": v for k, v in r["router"].items()}}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "-"
        ledger = "" if r["ledger_height"] is None else f" ledger height {r['ledger_height']}"
        pool = "".join(f" presignatures {k}={v}" for k, v in sorted(r["presignatures"].items()))
        if r["running"]:
            print(
                f"member {r['id']}: {r['state']} pid {r['pid']} "
                f"linked {r['linked']}/{len(members) - 1}{ledger}{pool}  {shown}"
            )
        else:
            print(f"member {r['id']}: not running")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from synod.node.local_cluster import stop_members, validators

    members = _load("down", args.dir)
    if members is None:
        return 2
    progress = Progress()
    stopped, killed = stop_members(members, args.timeout, progress.step)
    net = validators(args.dir)
    if net is not None:
        running = [m for m, _ in members if net.detached_pids(m)]
        forced = net.stop_detached(running, args.timeout)
        if running:
            progress.step(
                f"validators of members {running} stopped"
                + (f"; killed: {forced}" if forced else "")
            )
    if args.json:
        print(json.dumps({"stopped": stopped, "killed": killed}))
    else:
        print(f"{len(stopped)} members stopped" + (f" ({len(killed)} killed)" if killed else ""))
    return 0
