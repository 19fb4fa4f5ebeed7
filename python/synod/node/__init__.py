"""One committee member: `SignerNode` and the small interfaces it is driven through.

A node is sans-I/O like the sessions it runs: whoever owns the transport hands it
inbound bytes (`on_message`) and clock ticks (`on_tick`), and everything it wants
sent leaves through `Transport.send`. The production owner is the node process over
gRPC; the deterministic simulator (`synod.sim`) is another owner, with virtual time.
"""

from synod.node.keyring import KeyRing
from synod.node.results import SessionKind, SessionResult, SessionStatus
from synod.node.signer_node import SignerNode
from synod.node.transport import Clock, MonotonicClock, Transport

__all__ = [
    "Clock",
    "KeyRing",
    "MonotonicClock",
    "SessionKind",
    "SessionResult",
    "SessionStatus",
    "SignerNode",
    "Transport",
]
