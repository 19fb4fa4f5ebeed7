"""A key ceremony among running member processes, driven through their control services.

`run_dkg` begins the DKG on every member and polls until each reports it done; it sees
only public data (the group key each member reports) and checks that the members agree
on it. `synod dkg` and the demo both use it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from synod.node.control import ControlClient, ControlError
from synod.node.results import SessionResult, SessionStatus

POLL_S = 0.05


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
                raise CeremonyFailed(f"member {member}: the DKG failed: {result.reason or '?'}")
            if result.status is SessionStatus.DONE:
                done[member] = result
                progress(f"member {member} done")
        time.sleep(POLL_S)
    return done
