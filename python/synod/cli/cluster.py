"""`synod cluster up|status|down`: the committee's member processes on this machine."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from synod.cli.progress import Progress


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "cluster",
        help="start, inspect or stop the local member processes",
        description="Manage one `synod node run` process per member directory of a committee "
        "created by `synod committee init`. Each member logs to DIR/node-<i>/node.log.",
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


def _members(root: Path) -> list[tuple[int, Path]]:
    from synod.node.committee import node_dir
    from synod.node.manifest import Manifest

    manifest = Manifest.load(root / "manifest.json")
    return [(m, node_dir(root, m)) for m in manifest.ids]


def _status_doc(directory: Path) -> dict[str, Any]:
    from synod.node.process import STATUS_FILE

    try:
        doc = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _fail(command: str, message: str) -> int:
    print(f"synod cluster {command}: error: {message}", file=sys.stderr)
    return 2


def _load(command: str, root: Path) -> list[tuple[int, Path]] | None:
    from synod.node.manifest import ManifestError

    try:
        return _members(root)
    except ManifestError as err:
        _fail(command, str(err))
        return None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_up(args: argparse.Namespace) -> int:
    from synod.node.process import running_pid

    members = _load("up", args.dir)
    if members is None:
        return 2
    progress = Progress()
    started: dict[int, subprocess.Popen[bytes]] = {}
    for member_id, directory in members:
        if running_pid(directory) is not None:
            progress.step(f"member {member_id} already running")
            continue
        log = open(directory / "node.log", "ab")  # noqa: SIM115 (handed to the child)
        started[member_id] = subprocess.Popen(
            [sys.executable, "-m", "synod.cli.main", "node", "run", "--dir", str(directory)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # detached: survives this command
            close_fds=True,
        )
        log.close()
        progress.step(f"member {member_id} started (pid {started[member_id].pid})")
    deadline = time.monotonic() + args.timeout
    waiting = dict(started)
    failed: dict[int, str] = {}
    while waiting and time.monotonic() < deadline:
        for member_id, proc in list(waiting.items()):
            directory = dict(members)[member_id]
            if proc.poll() is not None:
                failed[member_id] = f"exited with status {proc.returncode}"
                del waiting[member_id]
            elif running_pid(directory) == proc.pid:
                progress.step(f"member {member_id} listening")
                del waiting[member_id]
        time.sleep(0.1)
    for member_id in waiting:
        failed[member_id] = "not ready in time"
    result = {"started": sorted(started), "failed": {str(k): v for k, v in failed.items()}}
    if args.json:
        print(json.dumps(result))
    for member_id, why in sorted(failed.items()):
        log_path = dict(members)[member_id] / "node.log"
        print(f"member {member_id}: {why}; last log lines ({log_path}):", file=sys.stderr)
        print(_tail(log_path), file=sys.stderr)
    if failed:
        return 1
    if not args.json:
        print(f"{len(members)} members running ({len(started)} started)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from synod.node.process import running_pid

    members = _load("status", args.dir)
    if members is None:
        return 2
    rows = []
    for member_id, directory in members:
        pid = running_pid(directory)
        doc = _status_doc(directory) if pid is not None else {}
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
            }
        )
    if args.json:
        print(json.dumps({"members": rows}))
        return 0
    for r in rows:
        drops = {**r["transport"], **{f"router.{k}": v for k, v in r["router"].items()}}
        shown = ", ".join(f"{k}={v}" for k, v in sorted(drops.items())) or "-"
        if r["running"]:
            print(
                f"member {r['id']}: {r['state']} pid {r['pid']} "
                f"linked {r['linked']}/{len(members) - 1}  {shown}"
            )
        else:
            print(f"member {r['id']}: not running")
    return 0


def run_down(args: argparse.Namespace) -> int:
    from synod.node.process import pid_alive, running_pid

    members = _load("down", args.dir)
    if members is None:
        return 2
    progress = Progress()
    pids = {m: pid for m, d in members if (pid := running_pid(d)) is not None}
    for member_id, pid in pids.items():
        os.kill(pid, signal.SIGTERM)
        progress.step(f"member {member_id}: SIGTERM to pid {pid}")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids.values()):
        time.sleep(0.1)
    killed = []
    for member_id, pid in pids.items():
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(member_id)
            progress.step(f"member {member_id}: still running, SIGKILL")
    if args.json:
        print(json.dumps({"stopped": sorted(pids), "killed": killed}))
    else:
        print(f"{len(pids)} members stopped" + (f" ({len(killed)} killed)" if killed else ""))
    return 0
