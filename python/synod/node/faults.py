"""Test-only faults for a member process (`synod node run --test-fault ...`).

A deliberately faulty member is how the demo and the tests show that the committee
signs around a lying member and names it. A fault changes nothing but what the
member sends; the rest is the production node. Never start a production member with
a fault: it logs a warning at start and its status shows the fault.

  invalid-shares   answers every signing request with a signature share that does not
                   verify (one bit flipped), so the aggregator names it as the culprit
"""

from __future__ import annotations

from synod.node.sessions import SessionFactory
from synod.protocols.base import Send
from synod.protocols.codec import pack, unpack
from synod.protocols.roast import RoastSigner

TEST_FAULTS = ("invalid-shares",)


def corrupt_share(send: Send) -> Send:
    """The same signing-share message with one bit of the share flipped: well formed, but
    the share no longer verifies."""
    index, sub_id, share, nxt = unpack(send.payload, "iibb")
    assert isinstance(share, bytes)
    bad = share[:-1] + bytes([share[-1] ^ 1])
    return Send(send.to, send.kind, send.round, pack(index, sub_id, bad, nxt))


class _InvalidShareSigner(RoastSigner):
    def _on_sign(self, idx: int, sub_id: int, raw: bytes) -> list[Send]:
        return [corrupt_share(s) for s in super()._on_sign(idx, sub_id, raw)]


class InvalidShareFactory(SessionFactory):
    """Production sessions, except that the ROAST signer sends invalid shares."""

    signer_type = _InvalidShareSigner


def fault_factory(fault: str | None) -> SessionFactory | None:
    """The session factory for a named test fault (None: the production one)."""
    if fault is None:
        return None
    if fault == "invalid-shares":
        return InvalidShareFactory()
    raise ValueError(f"unknown test fault {fault!r} (known: {', '.join(TEST_FAULTS)})")
