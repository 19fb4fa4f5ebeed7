"""Hosts for tests and benchmarks: each one a Linux network namespace with its own address on
a bridge made for the run (veth pairs), so that members reach each other by IP as on separate
machines.

`tc netem` is not available here: a link is cut by setting its veth down and restored by
setting it up. Needs root and iproute2; `unavailable()` says why not otherwise. Everything
created is removed by `close` (names carry a random tag, so runs never collide).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"synodprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _free_net() -> int:
    """An x for 10.x.0.0/24 no interface here uses (another run's bridge, say)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    for net in range(77, 250):
        if f" 10.{net}." not in shown.stdout:
            return net
    raise RuntimeError("no free 10.x.0.0/24 network for the test hosts")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Hosts:
    """`n` hosts 1..n at 10.<net>.0.<10+i>/24 behind a bridge at 10.<net>.0.1 (`net`: the
    first one no interface here uses, by default)."""

    def __init__(self, n: int, net: int | None = None) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"sbr{self.tag}"
        self.net = net if net is not None else _free_net()
        self.names = {i: f"synod-{self.tag}-{i}" for i in range(1, n + 1)}
        self._made: list[tuple[str, str]] = []
        self._forward_rule: list[str] | None = None
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("addr", "add", f"10.{self.net}.0.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, ns in self.names.items():
                _ip("netns", "add", ns)
                self._made.append(("netns", ns))
                _ip(
                    "link", "add", self.veth(i), "type", "veth", "peer", "name", "eth0", "netns", ns
                )
                self._made.append(("link", self.veth(i)))  # gone with its namespace, or now
                _ip("link", "set", self.veth(i), "master", self.bridge, "up")
                for args in (
                    ("addr", "add", f"{self.address(i)}/24", "dev", "eth0"),
                    ("link", "set", "eth0", "up"),
                    ("link", "set", "lo", "up"),
                ):
                    _ip("netns", "exec", ns, "ip", *args)
            self._allow_forwarding()
        except BaseException:
            self.close()
            raise

    def _allow_forwarding(self) -> None:
        """Where a container engine has run, iptables may drop bridged traffic: let this
        bridge's through (removed again by `close`)."""
        if shutil.which("iptables") is None:
            return
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        done = subprocess.run(["iptables", "-I", *rule], capture_output=True, check=False)
        if done.returncode == 0:
            self._forward_rule = rule

    def veth(self, i: int) -> str:
        return f"sv{self.tag}{i}"

    def address(self, i: int) -> str:
        return f"10.{self.net}.0.{10 + i}"

    def argv(self, i: int, argv: Sequence[str]) -> list[str]:
        """`argv` run inside host `i`."""
        return ["ip", "netns", "exec", self.names[i], *argv]

    def cut(self, i: int) -> None:
        _ip("link", "set", self.veth(i), "down")

    def restore(self, i: int) -> None:
        _ip("link", "set", self.veth(i), "up")

    def close(self) -> None:
        if self._forward_rule is not None:
            subprocess.run(
                ["iptables", "-D", *self._forward_rule], capture_output=True, check=False
            )
            self._forward_rule = None
        for kind, name in reversed(self._made):
            if kind == "netns":
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            else:
                subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)
        self._made.clear()
