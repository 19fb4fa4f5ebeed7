"""The member processes of a committee on this machine: start, wait for, stop.

`synod cluster up|down`, the demo and the cluster benchmark start each member as a
detached `synod node run` process logging to ``DIR/node-<i>/node.log``, wait until it
has written its pid (it is listening), and stop it with SIGTERM, then SIGKILL after a
deadline. A member's public state is its ``status.json`` (`synod.node.process`).

A committee made with validators (`synod committee init --validators`) also has, per
member, a CometBFT validator and the ledger application over the member's own replica
(``DIR/node-<i>/ledger.db``, the member's ledger view), all under ``DIR/ledger``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.consensus.committee import Committee as LedgerCommittee
from synod.consensus.committee import raw_public
from synod.consensus.localnet import LAYOUT_FILE, LocalNet
from synod.node.committee import node_dir
from synod.node.manifest import Manifest
from synod.node.process import STATUS_FILE, running_pid
from synod.processes import terminate

LOG_FILE = "node.log"
Progress = Callable[[str], None]


def member_dirs(root: Path) -> list[tuple[int, Path]]:
    """(member id, member directory) for every member of the committee in `root`."""
    manifest = Manifest.load(root / "manifest.json")
    return [(m, node_dir(root, m)) for m in manifest.ids]


def read_status(directory: Path) -> dict[str, Any]:
    """A member's last published status ({} if none or unreadable)."""
    try:
        doc = json.loads((directory / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def log_tail(directory: Path, lines: int = 5) -> str:
    try:
        text = (directory / LOG_FILE).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Started:
    started: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # member -> why


def start_members(
    members: Sequence[tuple[int, Path]],
    timeout: float,
    extra_args: Mapping[int, Sequence[str]] | None = None,
    progress: Progress = lambda _msg: None,
) -> Started:
    """Start every member of `members` not running yet, with `extra_args[member]` after
    ``node run --dir DIR``, and wait until each listens (or exits, or `timeout` passes)."""
    out = Started()
    procs: dict[int, subprocess.Popen[bytes]] = {}
    dirs = dict(members)
    for member, directory in members:
        if running_pid(directory) is not None:
            progress(f"member {member} already running")
            continue
        argv = [sys.executable, "-m", "synod.cli.main", "node", "run", "--dir", str(directory)]
        argv += list((extra_args or {}).get(member, ()))
        with open(directory / LOG_FILE, "ab") as log:
            procs[member] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # detached: survives the command that started it
                close_fds=True,
            )
        out.started.append(member)
        progress(f"member {member} started (pid {procs[member].pid})")
    deadline = time.monotonic() + timeout
    waiting = dict(procs)
    while waiting and time.monotonic() < deadline:
        for member, proc in list(waiting.items()):
            if proc.poll() is not None:
                out.failed[member] = f"exited with status {proc.returncode}"
                del waiting[member]
            elif running_pid(dirs[member]) == proc.pid:
                progress(f"member {member} listening")
                del waiting[member]
        time.sleep(0.1)
    for member in waiting:
        out.failed[member] = "not ready in time"
    return out


def stop_members(
    members: Sequence[tuple[int, Path]], timeout: float, progress: Progress = lambda _msg: None
) -> tuple[list[int], list[int]]:
    """SIGTERM every running member of `members`, SIGKILL whoever still runs after
    `timeout`; returns (stopped, killed)."""
    pids = {m: pid for m, d in members if (pid := running_pid(d)) is not None}
    for member, pid in pids.items():
        progress(f"member {member}: SIGTERM to pid {pid}")
    killed = sorted(terminate(pids, timeout))
    for member in killed:
        progress(f"member {member}: still running after {timeout:g} s, SIGKILL")
    return sorted(pids), killed


def all_linked(members: Sequence[tuple[int, Path]]) -> bool:
    """Whether every member of `members` reports a live link to every other one."""
    ids = {m for m, _ in members}
    for member, directory in members:
        peers = read_status(directory).get("peers", {})
        if any(peers.get(str(p)) != "connected" for p in ids - {member}):
            return False
    return True


def wait_linked(members: Sequence[tuple[int, Path]], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not all_linked(members):
        if time.monotonic() > end:
            raise TimeoutError(f"members {[m for m, _ in members]} not all linked in time")
        time.sleep(0.05)


# -- the replicated ledger beside the signer nodes --------------------------------------

LEDGER_DIR = "ledger"  # DIR/ledger: the validator set (`synod.consensus.localnet`)
LEDGER_DB = "ledger.db"  # DIR/node-<i>/ledger.db: member i's replica, its ledger view
LEDGER_OPERATOR_KEY = "ledger-operator.key.pem"  # in DIR/operator: signs user requests
LEDGER_CHAIN_ID = "synod-local"


def ledger_view(directory: Path) -> Path:
    """A member's replica of the replicated ledger (its `node run --ledger`)."""
    return directory / LEDGER_DB


def init_validators(root: Path, cometbft: Path, timeout_commit_ms: int = 500) -> LocalNet:
    """Beside the committee in `root`: one CometBFT validator per member with the ledger
    application over the member's own replica, one genesis for all; the ledger's committee
    is the manifest's identity keys, plus a development operator key for user requests."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from synod.consensus.committee import operator_key_pem
    from synod.node.keystore import atomic_write

    manifest = Manifest.load(root / "manifest.json")
    directory = manifest.directory()
    operator = Ed25519PrivateKey.generate()
    atomic_write(root / "operator" / LEDGER_OPERATOR_KEY, operator_key_pem(operator), 0o600)
    public = raw_public(operator)
    committee = LedgerCommittee(
        LEDGER_CHAIN_ID, {m: directory[m].sign_key for m in manifest.ids}, {"api": public}
    )
    urls = [f"sqlite:///{ledger_view(node_dir(root, m))}" for m in manifest.ids]
    return LocalNet.create(root / LEDGER_DIR, str(cometbft), committee, urls, timeout_commit_ms)


def validators(root: Path) -> LocalNet | None:
    """The validator set beside the committee in `root`, if it has one."""
    if not (root / LEDGER_DIR / LAYOUT_FILE).is_file():
        return None
    return LocalNet.open(root / LEDGER_DIR)


def start_validators(
    net: LocalNet, members: Sequence[tuple[int, Path]], progress: Progress = lambda _msg: None
) -> dict[int, list[str]]:
    """Start (detached) every member's validator and ledger application not running yet;
    returns each member's `node run` arguments for its ledger view (its own replica).
    Raises `RuntimeError` naming the member whose validator did not start."""
    args = {}
    for member, directory in members:
        if not net.detached_pids(member):
            try:
                net.start(member, detach=True)
            except (RuntimeError, TimeoutError) as err:
                raise RuntimeError(f"member {member}: validator did not start: {err}") from None
            progress(f"member {member}: validator started")
        args[member] = ["--ledger", str(ledger_view(directory))]
    return args
