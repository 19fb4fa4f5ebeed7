"""Template binding for signing requests that reach a node from outside.

A withdrawal's signing request names the ledger record (`SignContext`); before the
node produces any nonce or share its validator asks the node's own view of the
ledger (`TemplateCheck`, supplied by whoever runs the node) whether the message is
the withdrawal's recorded template for that session. The protocol session id is
derived from the ledger's session id and the input index, so a request cannot
reuse a recorded session for another message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SignContext:
    withdraw_id: str
    ledger_session: str  # the withdrawal's recorded signing session id
    input_index: int  # which of the withdrawal's messages (one per Bitcoin input)


TemplateCheck = Callable[[SignContext, bytes], bool]
"""(context, message) -> whether `message` is the recorded template for that session."""


def signing_session_id(ledger_session: str, input_index: int) -> bytes:
    """The protocol session id of one message of a withdrawal's signing session."""
    return hashlib.sha256(f"{ledger_session}/{input_index}".encode()).digest()
