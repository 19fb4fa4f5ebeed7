"""What a signing session needs from a node's durable nonce store.

Sessions depend on this protocol, not on a concrete store: a node passes its
encrypted SQLite store (`synod.state.session_store.SessionStore`), a test may pass
any object that keeps the same promises:

- `put_nonce` returns only once the nonces are durable, so a commitment never
  leaves a node whose nonces a crash could lose and regenerate;
- `take_nonce` hands out a nonce at most once, ever (None when unknown, used or
  discarded);
- `discard_session` retires every fresh nonce of a session;
- `settle` finishes, off the critical path, what takes left to do (erasing the used
  ciphertexts from disk); the node calls it once the shares made from them are with
  its transport.
"""

from __future__ import annotations

from typing import Protocol


class NonceStore(Protocol):
    def put_nonce(self, nonce_id: str, session_id: bytes, nonces: bytes) -> None: ...

    def take_nonce(self, nonce_id: str) -> bytes | None: ...

    def discard_session(self, session_id: bytes) -> int: ...

    def settle(self) -> None: ...
