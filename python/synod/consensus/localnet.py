"""A validator set on loopback: per member, a CometBFT validator and its ledger application.

`LocalNet.create` runs ``cometbft init`` for each member, writes one genesis holding every
validator, and sets each node's config: loopback ports, the other nodes as persistent peers,
the block time. The committee file beside it lists the members' identity public keys (the
private keys stay with the caller), and ``localnet.json`` the members' homes, ports and
databases, so `LocalNet.open` finds the set again. `start`/`stop`/`kill` run the two
processes of one member; every process started is ended by `close`. Started with
``detach=True`` (`synod cluster up`) the processes outlive their starter: their pids are
in ``app.pid`` and ``cometbft.pid`` in the member's home, and `stop_detached` ends them.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synod.consensus.client import CometRpc, RpcError
from synod.consensus.committee import Committee
from synod.consensus.signed import MAX_TX_BYTES
from synod.processes import die_with_parent, pid_alive, terminate, tied_to_me


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def set_toml(text: str, section: str, key: str, value: str) -> str:
    """Replace ``key = ...`` inside ``[section]`` ("" for the top level) of CometBFT's config."""
    out, current, done = [], "", False
    for line in text.splitlines():
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            current = header.group(1)
        elif current == section and re.match(rf"^{re.escape(key)}\s*=", line) and not done:
            line, done = f"{key} = {value}", True
        out.append(line)
    if not done:
        raise KeyError(f"[{section}] {key} not in the CometBFT config")
    return "\n".join(out) + "\n"


LAYOUT_FILE = "localnet.json"
PID_FILES = {"app": "app.pid", "node": "cometbft.pid"}


@dataclass
class Member:
    member_id: int
    home: Path
    db_url: str
    app_port: int
    rpc_port: int
    p2p_port: int
    node_id: str = ""
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def rpc(self) -> CometRpc:
        return CometRpc(f"http://127.0.0.1:{self.rpc_port}")


class LocalNet:
    """`preexec` runs in each child before exec; `synod.processes.die_with_parent` ties the
    children to this process, through ``setpriv`` when installed (`tied_to_me`: nothing then
    runs in the forked child, which gRPC's threads make unsafe)."""

    def __init__(
        self,
        root: Path,
        binary: str,
        committee: Committee,
        members: list[Member],
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.root, self.binary, self.committee, self.members = root, binary, committee, members
        self.preexec = preexec

    @classmethod
    def create(
        cls,
        root: Path,
        binary: str,
        committee: Committee,
        db_urls: list[str] | None = None,
        timeout_commit_ms: int = 200,
        preexec: Callable[[], None] | None = None,
    ) -> LocalNet:
        root.mkdir(parents=True, exist_ok=True)
        ids = sorted(committee.members)
        members: list[Member] = []
        for i, mid in enumerate(ids):
            home = root / f"member{mid}"
            app, rpc, p2p = free_ports(3)
            db = db_urls[i] if db_urls else f"sqlite:///{home / 'ledger.db'}"
            subprocess.run([binary, "init", "--home", str(home)], check=True, capture_output=True)
            node_id = subprocess.run(
                [binary, "show-node-id", "--home", str(home)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            members.append(Member(mid, home, db, app, rpc, p2p, node_id))
        validators = []
        for m in members:
            key = json.loads((m.home / "config" / "priv_validator_key.json").read_text())
            validators.append(
                {
                    "address": key["address"],
                    "pub_key": key["pub_key"],
                    "power": "10",
                    "name": f"member{m.member_id}",
                }
            )
        genesis = json.loads((members[0].home / "config" / "genesis.json").read_text())
        genesis.update(chain_id=committee.chain_id, validators=validators, app_hash="")
        genesis["genesis_time"] = "2026-01-01T00:00:00Z"
        committee.save(root / "committee.json")
        for m in members:
            (m.home / "config" / "genesis.json").write_text(json.dumps(genesis, indent=2))
            peers = ",".join(f"{p.node_id}@127.0.0.1:{p.p2p_port}" for p in members if p is not m)
            path = m.home / "config" / "config.toml"
            text = path.read_text()
            commit = f'"{timeout_commit_ms}ms"'
            for section, key, value in (
                ("", "proxy_app", f'"tcp://127.0.0.1:{m.app_port}"'),
                ("", "moniker", f'"member{m.member_id}"'),
                ("", "log_level", '"error"'),
                ("rpc", "laddr", f'"tcp://127.0.0.1:{m.rpc_port}"'),
                ("p2p", "laddr", f'"tcp://127.0.0.1:{m.p2p_port}"'),
                ("p2p", "persistent_peers", f'"{peers}"'),
                ("p2p", "addr_book_strict", "false"),
                ("p2p", "allow_duplicate_ip", "true"),
                ("p2p", "pex", "false"),
                ("p2p", "flush_throttle_timeout", '"10ms"'),
                ("mempool", "max_tx_bytes", str(MAX_TX_BYTES + 1024)),
                ("mempool", "size", "20000"),
                ("consensus", "timeout_propose", '"1s"'),
                ("consensus", "timeout_prevote", '"500ms"'),
                ("consensus", "timeout_precommit", '"500ms"'),
                ("consensus", "timeout_commit", commit),
                ("tx_index", "indexer", '"null"'),
            ):
                text = set_toml(text, section, key, value)
            path.write_text(text)
        net = cls(root, binary, committee, members, preexec)
        layout = {
            "binary": binary,
            "members": [
                {
                    "member_id": m.member_id,
                    "home": str(m.home),
                    "db_url": m.db_url,
                    "app_port": m.app_port,
                    "rpc_port": m.rpc_port,
                    "p2p_port": m.p2p_port,
                    "node_id": m.node_id,
                }
                for m in members
            ],
        }
        (root / LAYOUT_FILE).write_text(json.dumps(layout, indent=2) + "\n")
        return net

    @classmethod
    def open(cls, root: Path, preexec: Callable[[], None] | None = None) -> LocalNet:
        """The validator set `create` made under `root`."""
        layout = json.loads((root / LAYOUT_FILE).read_text())
        members = [
            Member(
                int(m["member_id"]),
                Path(m["home"]),
                str(m["db_url"]),
                int(m["app_port"]),
                int(m["rpc_port"]),
                int(m["p2p_port"]),
                str(m["node_id"]),
            )
            for m in layout["members"]
        ]
        committee = Committee.load(root / "committee.json")
        return cls(root, str(layout["binary"]), committee, members, preexec)

    # ------------------------------------------------------------------ processes
    def member(self, member_id: int) -> Member:
        return next(m for m in self.members if m.member_id == member_id)

    def _spawn(self, argv: list[str], log: Any, detach: bool) -> subprocess.Popen[bytes]:
        if detach:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
        preexec = self.preexec
        if preexec is die_with_parent:
            argv, preexec = tied_to_me(argv)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)

    def start(self, member_id: int, detach: bool = False) -> None:
        m = self.member(member_id)
        self.stop(member_id)
        app_log = open(m.home / "app.log", "ab")  # noqa: SIM115 - owned by the process
        m.procs["app"] = self._spawn(
            [
                sys.executable,
                "-m",
                "synod.consensus",
                "serve",
                "--db",
                m.db_url,
                "--committee",
                str(self.root / "committee.json"),
                "--port",
                str(m.app_port),
            ],
            app_log,
            detach,
        )
        app_log.close()
        self._wait_listening(m.app_port, m.procs["app"])
        node_log = open(m.home / "cometbft.log", "ab")  # noqa: SIM115
        m.procs["node"] = self._spawn(
            [self.binary, "node", "--home", str(m.home)], node_log, detach
        )
        node_log.close()
        if detach:
            for name, proc in m.procs.items():
                (m.home / PID_FILES[name]).write_text(f"{proc.pid}\n")
            m.procs.clear()  # not ours to end: `stop_detached` does

    def start_all(self) -> None:
        for m in self.members:
            self.start(m.member_id)

    def stop(self, member_id: int, sig: int = signal.SIGTERM) -> None:
        """End the member's validator, then its application (SIGKILL: a crash)."""
        m = self.member(member_id)
        for name in ("node", "app"):
            proc = m.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def detached_pids(self, member_id: int) -> dict[str, int]:
        """The running detached processes of a member (name -> pid)."""
        out = {}
        for name, file in PID_FILES.items():
            try:
                pid = int((self.member(member_id).home / file).read_text().strip())
            except (OSError, ValueError):
                continue
            if pid_alive(pid):
                out[name] = pid
        return out

    def stop_detached(self, member_ids: list[int], timeout: float = 20.0) -> list[int]:
        """SIGTERM the given members' detached validators, then their applications, all at
        once (SIGKILL after `timeout`); returns the members one had to be killed of."""
        killed: set[int] = set()
        for name in ("node", "app"):
            pids = {m: p for m in member_ids if (p := self.detached_pids(m).get(name))}
            killed.update(terminate(pids, timeout))
            for m in member_ids:
                (self.member(m).home / PID_FILES[name]).unlink(missing_ok=True)
        return sorted(killed)

    def kill(self, member_id: int) -> None:
        self.stop(member_id, signal.SIGKILL)

    def close(self) -> None:
        for m in self.members:
            self.stop(m.member_id, signal.SIGKILL)

    def running(self, member_id: int) -> bool:
        procs = self.member(member_id).procs
        if procs:
            return all(p.poll() is None for p in procs.values())
        return len(self.detached_pids(member_id)) == len(PID_FILES)

    @staticmethod
    def _wait_listening(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 60) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"the ledger application exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")

    # ------------------------------------------------------------------ observation
    def height(self, member_id: int) -> int:
        try:
            return self.member(member_id).rpc.status().height
        except (RpcError, KeyError, TypeError):
            return -1

    def wait_height(
        self, height: int, members: list[int] | None = None, deadline_s: float = 120
    ) -> None:
        """Poll until every given member (default all) has committed `height`."""
        ids = members or [m.member_id for m in self.members]
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if all(self.height(i) >= height for i in ids):
                return
            for i in ids:
                if not self.running(i):
                    raise RuntimeError(f"member {i} is not running; see {self.member(i).home}")
            time.sleep(0.1)
        heights = {i: self.height(i) for i in ids}
        raise TimeoutError(f"height {height} not reached within {deadline_s} s: {heights}")
