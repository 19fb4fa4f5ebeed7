"""Ceremonies among running member processes, driven through their control services.

`run_dkg` begins the DKG on every member and polls until each reports it done; it sees
only public data (the group key each member reports) and checks that the members agree
on it. `synod dkg`, the demo and the cluster benchmark use it. `run_aux_info` runs the
CGGMP aux-info ceremony (`synod aux-info`): every member first generates its Paillier
primes, then all start the session together; each keeps its aux info in its keystore.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from synod.node.control import ControlClient, ControlError
from synod.node.results import SessionResult, SessionStatus

POLL_S = 0.05
PREPARE_POLL_S = 1.0


class CeremonyFailed(RuntimeError):
    """The members did not deliver the ceremony (the reason is safe to show)."""


@dataclass(frozen=True)
class GroupKey:
    """The public outcome of a DKG: the group key, and for BIP340 the Taproot output key
    (the x-only key the chain sees, which signatures from the cluster verify under)."""

    key_id: str
    scheme: str
    threshold: int
    members: tuple[int, ...]
    public_key: bytes
    output_key: bytes | None

    @property
    def verifying_key(self) -> bytes:
        return self.output_key or self.public_key


def run_dkg(
    clients: Mapping[int, ControlClient],
    key_id: str,
    scheme: str,
    threshold: int,
    timeout: float,
    progress: Callable[[str], None] = lambda _msg: None,
) -> GroupKey:
    """A DKG for `key_id` among every member in `clients` (a DKG needs all of them)."""
    members = sorted(clients)
    sid = os.urandom(32)
    progress(f"{scheme} DKG {key_id!r}: {threshold} of {len(members)} members")
    for member in members:
        try:
            clients[member].start_dkg(key_id, sid, scheme, members, threshold, timeout)
        except ControlError as err:
            raise CeremonyFailed(f"member {member} did not start the DKG: {err}") from None
    results = wait_all(clients, sid, members, time.monotonic() + timeout + 10, progress)
    keys = {r.public_key for r in results.values()}
    public_key = next(iter(keys))
    if len(keys) != 1 or public_key is None:
        raise CeremonyFailed("the members do not agree on the group key")
    output_key = None
    if scheme == "bip340":
        outputs = {r.output_key for r in results.values()}
        output_key = next(iter(outputs))
        if len(outputs) != 1 or output_key is None:
            raise CeremonyFailed("the members do not agree on the output key")
    progress(f"every member holds its share of {key_id!r}")
    return GroupKey(key_id, scheme, threshold, tuple(members), public_key, output_key)


def run_aux_info(
    clients: Mapping[int, ControlClient],
    timeout: float,
    progress: Callable[[str], None] = lambda _msg: None,
) -> float:
    """The aux-info ceremony among every member in `clients`; returns the seconds the
    primes took (the slowest member). `timeout` bounds each of the two steps."""
    members = sorted(clients)
    sid = os.urandom(32)
    started = time.monotonic()
    ready: set[int] = set()
    progress(f"aux info: {len(members)} members generate their Paillier primes")
    while len(ready) < len(members):
        if time.monotonic() - started > timeout:
            raise CeremonyFailed(
                f"primes not ready in time on members {sorted(set(members) - ready)}"
            )
        for member in members:
            if member in ready:
                continue
            try:
                if clients[member].prepare_aux_info(sid):
                    ready.add(member)
                    progress(f"member {member}: primes ready")
            except ControlError as err:
                if err.code != "UNAVAILABLE":
                    raise CeremonyFailed(f"member {member}: {err.detail}") from None
        time.sleep(PREPARE_POLL_S)
    primes_s = time.monotonic() - started
    for member in members:
        try:
            clients[member].start_aux_info(sid, members, timeout)
        except ControlError as err:
            raise CeremonyFailed(f"member {member} did not start: {err}") from None
    progress("aux info: the session runs among all members")
    deadline = time.monotonic() + timeout + 10
    wait_all(clients, sid, members, deadline, progress)
    stored: set[int] = set()
    while len(stored) < len(members):  # each member stores its output before using it
        if time.monotonic() >= deadline:
            raise CeremonyFailed(f"aux info not stored on members {sorted(set(members) - stored)}")
        for member in set(members) - stored:
            try:
                if clients[member].status()["aux_info"]:
                    stored.add(member)
            except ControlError:
                continue
        time.sleep(POLL_S)
    progress("every member holds its aux info")
    return primes_s


def wait_all(
    clients: Mapping[int, ControlClient],
    sid: bytes,
    members: list[int],
    deadline: float,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict[int, SessionResult]:
    """Poll until every member reports session `sid` done; a member reporting it failed,
    or the deadline, ends the wait with `CeremonyFailed`."""
    done: dict[int, SessionResult] = {}
    while len(done) < len(members):
        if time.monotonic() >= deadline:
            missing = sorted(set(members) - set(done))
            raise CeremonyFailed(f"timed out waiting for members {missing}")
        for member in members:
            if member in done:
                continue
            try:
                result = clients[member].get_result(sid)
            except ControlError:
                continue  # not reachable right now: ask again
            if result.status is SessionStatus.FAILED:
                why = result.reason or "no reason"
                raise CeremonyFailed(f"member {member}: the {result.kind.value} failed: {why}")
            if result.status is SessionStatus.DONE:
                done[member] = result
                progress(f"member {member} done")
        time.sleep(POLL_S)
    return done
