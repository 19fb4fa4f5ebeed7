"""This member's part of the CGGMP aux-info ceremony in a member process.

Aux info (each member's Paillier key and ring-Pedersen parameters) is what a member
needs before any threshold-ECDSA keygen. It takes two steps, both begun by the
operator over the control service and both begin/poll:

1. `prepare(session_id)` starts generating this member's two safe primes on a
   thread of its own (tens of seconds; the generator releases the GIL, so the node
   keeps running) and reports whether they are ready. Every member is prepared
   before any starts, so no member's first messages wait long in the others' early
   buffers.
2. `start(session_id, participants, timeout)` starts the session on the node with
   those primes.

`poll()`, called by the process's main loop, stores a finished ceremony's aux info
in the keystore (`store`) before the runner uses it for ECDSA keygens. The primes
never leave memory; after a failed ceremony they are kept for the next attempt.
One ceremony at a time; a member that has aux info refuses another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from synod.crypto import ecdsa
from synod.node.results import SessionStatus
from synod.node.runner import NodeRunner
from synod.node.signer_node import SignerNode

log = logging.getLogger("synod.node.aux_info")


class AuxInfoRefused(ValueError):
    """The ceremony step cannot be taken now (the reason is safe to show)."""


class AuxInfoCeremony:
    def __init__(
        self,
        runner: NodeRunner,
        store: Callable[[ecdsa.AuxInfo], None],
        generate: Callable[[], ecdsa.Primes] = ecdsa.Primes.generate,
    ) -> None:
        self.runner = runner
        self.store = store
        self.generate = generate
        self._lock = threading.Lock()
        self._session: bytes | None = None  # the ceremony being prepared or run
        self._primes: ecdsa.Primes | None = None
        self._failed: str | None = None
        self._thread: threading.Thread | None = None
        self._started = False

    def prepare(self, session_id: bytes) -> bool:
        """Begin generating the primes for `session_id` (idempotent); whether they are ready."""
        with self._lock:
            if self.runner.aux_info is not None:
                raise AuxInfoRefused("this member already has CGGMP aux info")
            if self._session not in (None, session_id) and self._started:
                raise AuxInfoRefused("another aux-info ceremony is running on this member")
            self._session = session_id
            if self._failed is not None:
                raise AuxInfoRefused(f"prime generation failed: {self._failed}")
            if self._primes is None and self._thread is None:
                self._thread = threading.Thread(
                    target=self._generate, name="aux-info-primes", daemon=True
                )
                self._thread.start()
                log.info("generating Paillier primes for the aux-info ceremony")
            return self._primes is not None

    def _generate(self) -> None:
        try:
            primes = self.generate()
        except Exception as err:  # reported to the operator on the next prepare
            with self._lock:
                self._failed = type(err).__name__
                self._thread = None
            log.error("prime generation failed: %s", type(err).__name__)
            return
        with self._lock:
            self._primes = primes
            self._thread = None
        log.info("Paillier primes ready")

    def start(self, session_id: bytes, participants: Iterable[int], timeout: float) -> None:
        """Start the session with the prepared primes (again: a no-op)."""
        members = list(participants)
        with self._lock:
            if self.runner.aux_info is not None:
                raise AuxInfoRefused("this member already has CGGMP aux info")
            if self._session != session_id or self._primes is None:
                raise AuxInfoRefused("primes not ready: PrepareAuxInfo until it reports ready")
            primes = self._primes

        def begin(node: SignerNode, now: float) -> None:
            if node.result(session_id) is None:
                node.start_aux_info(session_id, members, primes, now, timeout=timeout)

        try:
            self.runner.call(begin)
        except ValueError as err:  # e.g. this member is not a participant
            raise AuxInfoRefused(str(err)) from None
        with self._lock:
            self._started = True

    def poll(self) -> None:
        """Store a finished ceremony's output; forget a failed one (the primes stay)."""
        with self._lock:
            sid = self._session if self._started else None
        if sid is None:
            return
        result = self.runner.call(lambda node, _now: node.result(sid), timeout=0.5)
        if result is None or result.status is SessionStatus.RUNNING:
            return
        output = result.output
        if result.status is SessionStatus.DONE and isinstance(output, ecdsa.AuxInfo):
            self.store(output)  # durable before it is used
            result.output = None
            self.runner.aux_info = output
            with self._lock:
                self._session, self._primes, self._started = None, None, False
            log.info("CGGMP aux info stored")
            return
        with self._lock:
            self._started = False
        log.warning("the aux-info ceremony failed: %s", result.reason or "no reason")
