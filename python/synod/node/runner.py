"""`NodeRunner`: one `SignerNode` on one thread of its own.

Everything that touches the node — an inbound envelope from a peer link (`deliver`),
the periodic tick, a control call (`call`) — is a job on the runner's bounded inbox,
run in order on the runner's thread. The node stays single-threaded and sans-I/O,
and the Rust CGGMP sessions, which must live on the thread that made them, do. A
full inbox drops the envelope (counted in `counters`); a control call waits for its
answer with a deadline. `wait_finished` lets a control call wait, bounded, for a session
to end: the runner checks its watches after every job, so the caller hears of the end
without polling.

The runner also holds what the control service needs beyond the node: the template
check (the node's view of the ledger), this member's CGGMP aux info, and whether an
operator may ask for a signature over an ad-hoc message.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from synod.crypto import ecdsa
from synod.node.presign_pool import PresignPool
from synod.node.results import SessionResult
from synod.node.signer_node import SignerNode
from synod.node.templates import SignContext, TemplateCheck, signing_session_id
from synod.node.transport import Clock
from synod.protocols.roast import TemplateValidator

T = TypeVar("T")
log = logging.getLogger("synod.node.runner")

INBOX = 10_000
TICK_S = 0.05


class RunnerStopped(RuntimeError):
    """The runner is not running (stopped, or never started)."""


@dataclass
class _Watch:
    """A caller waiting for a session to end (owned by the runner's thread)."""

    session_id: bytes
    expires: float  # time.monotonic(): dropped unheard after this
    ended: threading.Event = field(default_factory=threading.Event)


class NodeRunner:
    def __init__(
        self,
        node: SignerNode,
        clock: Clock,
        template_check: TemplateCheck | None = None,
        aux_info: ecdsa.AuxInfo | None = None,
        operator_signing: bool = True,
        tick_interval: float = TICK_S,
        inbox: int = INBOX,
        pool: PresignPool | None = None,
    ) -> None:
        """`pool`, when given, is installed on the node and ticked with it."""
        self.node = node
        self.pool = pool
        self.clock = clock
        self.template_check = template_check
        self.aux_info = aux_info
        self.operator_signing = operator_signing
        self.tick_interval = tick_interval
        self.counters: Counter[str] = Counter()
        self._inbox: queue.Queue[Callable[[], None] | None] = queue.Queue(inbox)
        self._thread = threading.Thread(target=self._loop, name=f"node-{node.node_id}", daemon=True)
        self._running = False
        self._watches: list[_Watch] = []  # bounded by the control service's waiters

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._thread.start()
        if self.pool is not None:
            pool = self.pool
            self.call(lambda _node, now: pool.install(now))

    def stop(self, timeout: float = 10.0) -> None:
        if not self._running:
            return
        self._running = False
        self._inbox.put(self._close)  # blocks only while the inbox is full
        self._inbox.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        while True:
            try:
                job = self._inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                job = self._tick
            if job is None:
                return
            self._run(job)
            if time.monotonic() >= next_tick:
                if job is not self._tick:
                    self._run(self._tick)
                next_tick = time.monotonic() + self.tick_interval
            if self._watches:
                self._run(self._check_watches)

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception:  # a failed job (or tick) must not stop the member
            self.counters["job_error"] += 1
            log.exception("node %d: a job failed", self.node.node_id)

    def _check_watches(self) -> None:
        now = time.monotonic()
        keep: list[_Watch] = []
        for watch in self._watches:
            result = self.node.result(watch.session_id)
            if result is None or result.finished:
                watch.ended.set()
            elif now < watch.expires:
                keep.append(watch)
        self._watches = keep

    def _close(self) -> None:
        self.node.close()
        gc.collect()  # sessions in reference cycles are released here, on their own thread

    def _tick(self) -> None:
        now = self.clock.now()
        self.node.on_tick(now)
        if self.pool is not None:
            self.pool.tick(now)

    # -- ways in ---------------------------------------------------------------------
    def deliver(self, data: bytes) -> None:
        """One inbound envelope from a peer link (untrusted bytes); never blocks."""

        def job() -> None:
            self.node.on_message(data, self.clock.now())

        try:
            self._inbox.put_nowait(job)
        except queue.Full:
            self.counters["inbox_full"] += 1

    def call(self, fn: Callable[[SignerNode, float], T], timeout: float = 10.0) -> T:
        """Run `fn(node, now)` on the runner's thread and return its result."""
        if not self._running:
            raise RunnerStopped(f"node {self.node.node_id} is not running")
        future: Future[T] = Future()

        def job() -> None:
            try:
                future.set_result(fn(self.node, self.clock.now()))
            except Exception as err:
                future.set_exception(err)

        self._inbox.put(job, timeout=timeout)
        return future.result(timeout)

    def wait_finished(self, session_id: bytes, timeout: float) -> SessionResult | None:
        """The session's result once it has ended, or as it stands after `timeout` seconds
        (None: no such session). Blocks the calling thread, never the runner's."""
        watch = _Watch(session_id, time.monotonic() + timeout)

        def begin(_node: SignerNode, _now: float) -> None:
            self._watches.append(watch)
            self._check_watches()  # it may have ended already

        self.call(begin, timeout)
        watch.ended.wait(timeout)
        return self.call(lambda node, _now: node.result(session_id), timeout)

    # -- template binding ------------------------------------------------------------
    def validator(self, context: SignContext | None, message: bytes) -> TemplateValidator:
        """The check a signing session runs before every nonce and share.

        With a ledger context: the session id must be the one derived from the recorded
        session, and the node's own ledger view must say `message` is that withdrawal's
        template. Without one (an operator's ad-hoc message): exactly this message, and
        only if the node allows operator signing.
        """
        if context is None:
            allowed = self.operator_signing

            def operator(session_id: bytes, candidate: bytes) -> bool:
                return allowed and candidate == message

            return operator
        check = self.template_check
        expected = signing_session_id(context.ledger_session, context.input_index)

        def recorded(session_id: bytes, candidate: bytes) -> bool:
            if check is None or session_id != expected or candidate != message:
                return False
            return check(context, candidate)

        return recorded
