"""Shared helpers for node tests: free loopback ports, a small committee on disk."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from synod.node.committee import NodeMaterial, init_committee, load_node, node_dir
from synod.node.keystore import KdfParams

FAST_KDF = KdfParams(time_cost=1, memory_cost=64, parallelism=1)  # tests only


def free_base_port(n: int) -> int:
    """A base port P with P+1..P+n free on 127.0.0.1 right now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        socks = []
        try:
            for i in range(1, n + 1):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range on 127.0.0.1")


def wait_for(cond: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    """Poll `cond` until it holds; fail naming `what` after a generous deadline."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def make_committee(root: Path, t: int, n: int) -> dict[int, NodeMaterial]:
    init_committee(root, t, n, free_base_port(n), kdf=FAST_KDF)
    return {
        i: load_node(node_dir(root, i), (node_dir(root, i) / "passphrase").read_bytes().strip())
        for i in range(1, n + 1)
    }
