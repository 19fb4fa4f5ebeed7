"""Signing latency of a loopback committee of member processes (`python -m synod.bench --cluster`).

A fresh development committee (t-of-n on 127.0.0.1) is created in a temporary
directory and started as n `synod node run` processes; one DKG per FROST suite runs
over the members' control services (for CGGMP first the aux-info ceremony, from the
TEST-ONLY pregenerated primes, then the ECDSA keygen; each CGGMP signature is the full
interactive signing, no presignature; `ecdsa-pool` signs from the members' presignature
pools instead: the members are restarted with a pool target, the pools filled, and the
members restarted once more with the pool off, so that the timed signatures compete with
no background presigning), then each signature is timed from the first
`StartSign` (sent to every member at once) until a member reports a signature that
verifies under the group key. The control calls use the operator certificate over
mutual TLS, exactly as `synod sign` does; right after its `StartSign`, each member is
asked for the result with a wait (`GetResult` answers when the session ends), so the
numbers include the control calls themselves but no polling slack.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from synod.bench.ecdsa import ECDSA_PRIMES
from synod.bench.table import format_seconds
from synod.chains.localnode import free_base_port
from synod.node.ceremony import run_aux_info, run_dkg
from synod.node.committee import init_committee
from synod.node.control import ControlClient, ControlError, operator_clients
from synod.node.local_cluster import (
    member_dirs,
    read_status,
    start_members,
    stop_members,
    wait_linked,
)
from synod.runtime.node_signer import verify_signature

WAIT_S = 10.0  # how long one GetResult may wait for the session to end
Progress = Callable[[str], None]
SCHEMES = ("bip340", "ed25519", "ecdsa", "ecdsa-pool")
SUITE_NAMES = {
    "bip340": "frost-secp256k1-tr (ROAST)",
    "ed25519": "frost-ed25519 (ROAST)",
    "ecdsa": "cggmp21 secp256k1 (no presignature)",
    "ecdsa-pool": "cggmp21 secp256k1 (from the presignature pool)",
}
NO_POOL = ("--presign-target", "0", "--presign-min", "0")


@dataclass(frozen=True)
class Latency:
    scheme: str
    params: str
    samples: list[float]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _sign_once(
    clients: dict[int, ControlClient], pool: ThreadPoolExecutor, scheme: str, key: bytes
) -> float:
    message, sid = os.urandom(32), os.urandom(32)

    def ask(client: ControlClient) -> tuple[bytes | None, float]:
        client.start_sign(f"bench-{scheme}", sid, scheme, message, None, 5.0, 60.0)
        signature = _signature_of(client, sid)
        return signature, time.perf_counter()

    start = time.perf_counter()
    asked = [pool.submit(ask, c) for c in clients.values()]
    first: float | None = None
    for f in as_completed(asked):  # every member is heard before the next signature
        signature, at = f.result()
        if signature is not None and first is None:
            if not verify_signature(scheme, key, message, signature):
                raise RuntimeError("a member reported a signature that does not verify")
            first = at - start
    if first is None:
        raise RuntimeError(f"no signature within {WAIT_S:g} s")
    return first


def _signature_of(client: ControlClient, sid: bytes) -> bytes | None:
    try:
        return client.get_result(sid, WAIT_S).signature
    except ControlError:
        return None


def cluster_latencies(
    threshold: int,
    n: int,
    signatures: int,
    progress: Callable[[str], None],
    schemes: tuple[str, ...] = SCHEMES,
) -> list[Latency]:
    out: list[Latency] = []
    with tempfile.TemporaryDirectory(prefix="synod-bench-cluster-") as tmp:
        root = Path(tmp) / "committee"
        progress(f"committee {threshold}-of-{n} in {root}")
        init_committee(root, threshold, n, free_base_port(n))
        members = member_dirs(root)
        # CGGMP aux info from the TEST-ONLY pregenerated primes: generating fresh ones takes
        # minutes and has nothing to do with signing latency.
        primes = ["--test-primes", str(ECDSA_PRIMES), "--adhoc-signing"]
        clients: dict[int, ControlClient] = {}

        def restart(args: list[str]) -> None:
            for client in clients.values():
                client.close()
            stop_members(members, 30.0)
            started = start_members(members, 120.0, {m: args for m, _ in members})
            if started.failed:
                raise RuntimeError(f"members did not start: {started.failed}")
            wait_linked(members, 120.0)
            clients.clear()
            clients.update(operator_clients(root, timeout=30))

        keys: dict[str, bytes] = {}
        aux_ready = False
        try:
            restart([*primes, *NO_POOL])
            with ThreadPoolExecutor(max_workers=n) as pool:
                for scheme in schemes:
                    protocol = "ecdsa" if scheme.startswith("ecdsa") else scheme
                    if protocol == "ecdsa" and not aux_ready:
                        run_aux_info(clients, 1800.0, progress)
                        aux_ready = True
                    if protocol not in keys:
                        key = run_dkg(clients, f"bench-{protocol}", protocol, threshold, 600.0)
                        keys[protocol] = key.verifying_key
                    key_bytes = keys[protocol]
                    if scheme == "ecdsa-pool":
                        # every member leads runs until it holds enough for its share of the
                        # signatures (a presignature is held by t members; leaders are random)
                        need = 3 * (signatures + 5) * threshold // (2 * n) + 5
                        fill = ["--presign-target", str(need), "--presign-min", str(need)]
                        restart([*primes, *fill, "--presign-batch", "2"])
                        _fill(members, f"bench-{protocol}", need, progress)
                        restart([*primes, *NO_POOL])  # the pools stay, nothing refills them
                    progress(f"{scheme}: key ready; warming up")
                    for _ in range(5):
                        _sign_once(clients, pool, protocol, key_bytes)
                    samples = []
                    for i in range(signatures):
                        samples.append(_sign_once(clients, pool, protocol, key_bytes))
                        if (i + 1) % 50 == 0:
                            progress(f"{scheme}: {i + 1}/{signatures} signatures")
                    out.append(Latency(scheme, f"{threshold}/{n}", samples))
        finally:
            for client in clients.values():
                client.close()
            stop_members(members, 30.0)
    return out


def _fill(members: list[tuple[int, Path]], key_id: str, need: int, progress: Progress) -> None:
    """Wait until every member's pool holds `need` presignatures of `key_id`."""
    deadline, last = time.monotonic() + 7200, ""
    while time.monotonic() < deadline:
        levels = [read_status(d).get("presignatures", {}).get(key_id, 0) for _, d in members]
        if min(levels) >= need:
            return
        shown = f"pools {levels} of {need}"
        if shown != last:
            progress(shown)
            last = shown
        time.sleep(1.0)
    raise RuntimeError(f"the presignature pools did not fill within 2 hours: {last}")


def render_latencies(rows: list[Latency]) -> str:
    head = ["suite", "t/n", "signatures", "p50", "p99", "mean", "max"]
    body = [
        [
            SUITE_NAMES[r.scheme],
            r.params,
            str(len(r.samples)),
            format_seconds(r.quantile(0.50)),
            format_seconds(r.quantile(0.99)),
            format_seconds(statistics.fmean(r.samples)),
            format_seconds(max(r.samples)),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |" for b in body
    ]
    return "\n".join(lines)
