"""Signed webhooks: withdrawal state changes and credited deposits, POSTed to subscribers.

`Webhooks` is the Python API (subscribe / unsubscribe / list / deliveries / attempts) and the
delivery loop. Each pass first fills the outbox from the ledger's log of applied transactions
(`synod.state.webhooks`), then POSTs what is due. A delivery is at least once: it stays
pending until a 2xx answer, and each failure (a non-2xx status, a timeout, a refused
connection) is logged and retried after an exponentially growing delay, ``backoffMs`` ×
2^(attempt−1) capped at ``maxBackoffMs``; after ``maxAttempts`` it is marked failed.

Each request carries the JSON event as its body and a signature header::

    Synod-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

A receiver recomputes the HMAC over the exact bytes received, compares in constant time,
and rejects a timestamp too far from its clock (replay). The event's ``id`` (the ledger
transaction id) is stable across retries, so a receiver can drop repeats.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import httpx

from synod.config import SynodConfig, WebhooksConfig
from synod.state.db import PostgresDatabase, SqliteDatabase
from synod.state.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Subscription,
    WebhookStore,
)

log = logging.getLogger("synod.runtime.webhooks")

SIGNATURE_HEADER = "Synod-Signature"
EVENT_HEADER = "Synod-Event"
DELIVERY_BATCH = 100  # deliveries attempted per pass


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    timeout_s: float = 5.0

    @classmethod
    def from_config(cls, cfg: WebhooksConfig) -> Policy:
        return cls(
            cfg.max_attempts,
            cfg.backoff_ms / 1000,
            cfg.max_backoff_ms / 1000,
            cfg.timeout_ms / 1000,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class Webhooks:
    """The webhook service over the ledger's database (give it its own connection when the
    delivery loop runs in another thread than the ledger)."""

    def __init__(
        self,
        db: SqliteDatabase | PostgresDatabase,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = WebhookStore(db)
        self.policy = policy or Policy()
        self.clock = clock
        self.client = httpx.Client(
            timeout=self.policy.timeout_s, follow_redirects=False, transport=transport
        )

    @classmethod
    def from_config(cls, db: SqliteDatabase | PostgresDatabase, cfg: SynodConfig) -> Webhooks:
        return cls(db, Policy.from_config(cfg.webhooks))

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ the API
    def subscribe(self, url: str, kinds: Iterable[str], secret: str | None = None) -> Subscription:
        """Subscribe `url` to event `kinds`; the returned subscription holds the secret."""
        return self.store.subscribe(url, kinds, secret)

    def unsubscribe(self, sub_id: str) -> bool:
        return self.store.unsubscribe(sub_id)

    def list(self) -> list[Subscription]:
        """Every subscription, without its secret (shown once, by `subscribe`)."""
        return [replace(s, secret="") for s in self.store.subscriptions()]

    def deliveries(self, sub_id: str, limit: int = 100) -> builtins.list[Delivery]:
        """Events queued for the subscription, newest first, with their state."""
        return self.store.deliveries(sub_id, limit)

    def attempts(self, sub_id: str, limit: int = 100) -> builtins.list[Attempt]:
        """The delivery log: every attempt with status code, time and error, newest first."""
        return self.store.attempts(sub_id, limit)

    # ------------------------------------------------------------------ delivery
    def step(self, stop: threading.Event | None = None) -> int:
        """Fill the outbox, then attempt what is due; the number delivered. A set `stop` ends
        the pass between two deliveries (what is left stays due)."""
        now = self.clock()
        self.store.fill_outbox(now)
        secrets = {s.sub_id: s for s in self.store.subscriptions(active_only=True)}
        delivered = 0
        for delivery in self.store.due(now, DELIVERY_BATCH):
            if stop is not None and stop.is_set():
                break
            sub = secrets.get(delivery.sub_id)
            if sub is None:
                continue  # unsubscribed meanwhile
            delivered += self._attempt(sub, delivery)
        return delivered

    def _attempt(self, sub: Subscription, delivery: Delivery) -> int:
        body = delivery.body.encode()
        at = self.clock()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(sub.secret, int(at), body),
            EVENT_HEADER: delivery.kind.value,
        }
        status: int | None = None
        error: str | None = None
        try:
            with self.client.stream("POST", sub.url, content=body, headers=headers) as response:
                status = response.status_code  # the body is never read: it is not ours
        except httpx.HTTPError as err:
            error = f"{type(err).__name__}: {err}"
        if status is not None and 200 <= status < 300:
            self.store.record_attempt(delivery, at, status, None, DeliveryStatus.DELIVERED, at)
            return 1
        error = error or f"HTTP {status}"
        attempt = delivery.attempts + 1
        if attempt >= self.policy.max_attempts:
            log.warning(
                "webhook %s to %s failed for good: %s", delivery.event_id, sub.sub_id, error
            )
            self.store.record_attempt(delivery, at, status, error, DeliveryStatus.FAILED, at)
        else:
            retry_at = at + self.policy.delay(attempt)
            self.store.record_attempt(delivery, at, status, error, DeliveryStatus.PENDING, retry_at)
        return 0

    def run(self, stop: threading.Event, poll_interval_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.step(stop)
            except Exception:  # a database hiccup must not end deliveries
                log.exception("webhook pass failed; retrying after the poll interval")
            stop.wait(poll_interval_s)
