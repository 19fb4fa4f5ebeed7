"""Signed webhooks: withdrawal state changes and credited deposits, POSTed to subscribers.

`Webhooks` is the Python API (subscribe / unsubscribe / list / deliveries / attempts) and the
delivery loop. Each pass first fills the outbox from the ledger's log of applied transactions
(`synod.state.webhooks`), then hands what is due to a bounded pool of ``workers`` threads: one
job per subscription (its due deliveries in order, ending at the first failure), at most one job
per subscription at a time and at most ``workers`` + ``queueSize`` jobs claimed at once, so a
receiver that stalls until the timeout holds one worker and delays nobody else; what is not
claimed stays in the outbox for a later pass. A delivery is at least once: it stays pending
until a 2xx answer, and each failure (a non-2xx status, a timeout, a refused connection, a
refused destination, a secret that does not open) is logged and retried after an exponentially
growing delay, ``backoffMs`` × 2^(attempt−1) capped at ``maxBackoffMs``; after ``maxAttempts``
it is marked failed.

Before every request the subscription's host is resolved and checked again
(`synod.runtime.destinations`): loopback, private, link-local and other non-public addresses are
refused unless ``allowNetworks`` covers them, and the request goes to the address checked.
Subscription secrets are sealed in the database under a key kept outside it: the 32 bytes
(64 hex digits) of ``SYNOD_WEBHOOK_KEY``, else the key file ``secretKeyFile``, else
``<sqlite store>.webhook-key`` beside a SQLite store (``synod-webhook.key`` in the working
directory for PostgreSQL); a missing key file is created (mode 0600) on first use.

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
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from synod import metrics
from synod.config import ConfigError, SynodConfig, WebhooksConfig
from synod.node.keystore import atomic_write
from synod.runtime.destinations import (
    DestinationError,
    Destinations,
    Network,
    Resolver,
    Target,
    UnresolvedError,
    system_resolver,
)
from synod.state.db import PostgresDatabase, SqliteDatabase
from synod.state.webhooks import (
    SECRET_KEY_LEN,
    Attempt,
    Delivery,
    DeliveryStatus,
    SecretBox,
    SecretKeyError,
    Subscription,
    WebhookStore,
    check_url,
)

log = logging.getLogger("synod.runtime.webhooks")

SIGNATURE_HEADER = "Synod-Signature"
EVENT_HEADER = "Synod-Event"
DELIVERY_BATCH = 100  # deliveries read per pass
SECRET_KEY_ENV = "SYNOD_WEBHOOK_KEY"
KEY_FILE_SUFFIX = ".webhook-key"
POSTGRES_KEY_FILE = "synod-webhook.key"
_KEY_TEXT = re.compile(r"[0-9a-fA-F]{64}")


class WebhookKeyError(ConfigError):
    """The key that seals subscription secrets cannot be had (a configuration problem: the
    commands stop with status 2); one line, never the key."""


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def default_key_file(db: SqliteDatabase | PostgresDatabase) -> Path:
    """The secret key file beside a SQLite store, or in the working directory."""
    if isinstance(db, SqliteDatabase):
        return Path(db.path + KEY_FILE_SUFFIX)
    return Path(POSTGRES_KEY_FILE)


def _parse_key(text: str, where: str) -> bytes:
    if not _KEY_TEXT.fullmatch(text.strip()):
        raise WebhookKeyError(f"{where}: a webhook key is {SECRET_KEY_LEN * 2} hex digits")
    return bytes.fromhex(text.strip())


def _read_key_file(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            raw = fh.read(SECRET_KEY_LEN * 2 + 3)
    except OSError as err:
        raise WebhookKeyError(f"cannot read webhook key file {path}: {err.strerror}") from None
    if mode & 0o077:
        raise WebhookKeyError(
            f"webhook key file {path} is open to other users (mode {mode & 0o777:o}): chmod 600"
        )
    return _parse_key(raw.decode("ascii", "replace"), f"webhook key file {path}")


def _create_key_file(path: Path) -> None:
    """A new random key at `path`, mode 0600; a file another process created first wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        atomic_write(tmp, os.urandom(SECRET_KEY_LEN).hex().encode() + b"\n")
        os.link(tmp, path)  # never replaces an existing key
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the key outlives a crash as surely as the secrets sealed with it
        finally:
            os.close(dfd)
    except FileExistsError:
        pass
    except OSError as err:
        raise WebhookKeyError(f"cannot create webhook key file {path}: {err.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def load_secret_key(file: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The key sealing subscription secrets: from `SYNOD_WEBHOOK_KEY` when set, else from
    `file`, created with a new random key when it does not exist."""
    value = (os.environ if environ is None else environ).get(SECRET_KEY_ENV)
    if value is not None:
        return _parse_key(value, SECRET_KEY_ENV)
    if not file.exists():
        _create_key_file(file)
    return _read_key_file(file)


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 8
    backoff_s: float = 1.0
    max_backoff_s: float = 600.0
    timeout_s: float = 5.0
    workers: int = 4
    queue_size: int = 64
    allow_networks: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, cfg: WebhooksConfig) -> Policy:
        return cls(
            cfg.max_attempts,
            cfg.backoff_ms / 1000,
            cfg.max_backoff_ms / 1000,
            cfg.timeout_ms / 1000,
            cfg.workers,
            cfg.queue_size,
            cfg.networks,
        )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return float(min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s))


class Webhooks:
    """The webhook service over the ledger's database (give it its own connection when the
    delivery loop runs in another thread than the ledger). Its store calls take turns under one
    lock, so the pool's workers share the connection safely."""

    def __init__(
        self,
        db: SqliteDatabase | PostgresDatabase,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        box: SecretBox | None = None,
        resolve: Resolver = system_resolver,
        ledger: SqliteDatabase | PostgresDatabase | None = None,
    ) -> None:
        self.policy = policy or Policy()
        box = box or SecretBox(load_secret_key(default_key_file(db)))
        self.store = WebhookStore(db, box, ledger)  # events from `ledger` (default: `db`)
        self.clock = clock
        self.destinations = Destinations(self.policy.allow_networks, resolve)
        self.client = httpx.Client(
            timeout=self.policy.timeout_s, follow_redirects=False, transport=transport
        )
        self._lock = threading.RLock()  # the store's connection: one call at a time
        self._claims = threading.Lock()
        self._busy: set[str] = set()  # subscriptions with a job claimed or running
        self._capacity = self.policy.workers + self.policy.queue_size
        self._pool = ThreadPoolExecutor(self.policy.workers, thread_name_prefix="synod-webhook")

    @classmethod
    def from_config(
        cls,
        db: SqliteDatabase | PostgresDatabase,
        cfg: SynodConfig,
        ledger: SqliteDatabase | PostgresDatabase | None = None,
    ) -> Webhooks:
        """The service as configured: its policy, and the secret key from `SYNOD_WEBHOOK_KEY`,
        `webhooks.secretKeyFile` or the default file beside the store; events from `ledger`
        (default: `db`)."""
        file = cfg.webhooks.secret_key_file
        key = load_secret_key(Path(file) if file else default_key_file(db))
        return cls(db, Policy.from_config(cfg.webhooks), box=SecretBox(key), ledger=ledger)

    def close(self) -> None:
        """Wait for the jobs under way (each ends after at most one attempt once the loop's
        stop is set), then close the HTTP client."""
        self._pool.shutdown(wait=True)
        self.client.close()

    # ------------------------------------------------------------------ the API
    def check_destination(self, url: str) -> None:
        """`SubscriptionError` for a malformed URL, `DestinationError` (one) if its host is,
        or resolves to, a refused address."""
        self.destinations.check(check_url(url))

    def subscribe(self, url: str, kinds: Iterable[str], secret: str | None = None) -> Subscription:
        """Subscribe `url` to event `kinds`; the returned subscription holds the secret."""
        self.check_destination(url)
        with self._lock:
            return self.store.subscribe(url, kinds, secret)

    def unsubscribe(self, sub_id: str) -> bool:
        with self._lock:
            return self.store.unsubscribe(sub_id)

    def list(self) -> list[Subscription]:
        """Every subscription, without its secret (shown once, by `subscribe`)."""
        with self._lock:
            return self.store.subscriptions()

    def deliveries(self, sub_id: str, limit: int = 100) -> builtins.list[Delivery]:
        """Events queued for the subscription, newest first, with their state."""
        with self._lock:
            return self.store.deliveries(sub_id, limit)

    def attempts(self, sub_id: str, limit: int = 100) -> builtins.list[Attempt]:
        """The delivery log: every attempt with status code, time and error, newest first."""
        with self._lock:
            return self.store.attempts(sub_id, limit)

    # ------------------------------------------------------------------ delivery
    def dispatch(self, stop: threading.Event | None = None) -> builtins.list[Future[int]]:
        """Fill the outbox, then hand each subscription's due deliveries to the pool as one
        job, for the subscriptions without a job under way and while fewer than `workers` +
        `queue_size` are claimed; each future gives the number its job delivered."""
        now = self.clock()
        with self._lock:
            self.store.fill_outbox(now)
            active = {s.sub_id: s for s in self.store.subscriptions(active_only=True)}
            with self._claims:
                busy = set(self._busy)
            due = self.store.due(now, DELIVERY_BATCH, busy)
        jobs: dict[str, builtins.list[Delivery]] = {}
        for delivery in due:
            if delivery.sub_id in active:  # not unsubscribed meanwhile
                jobs.setdefault(delivery.sub_id, []).append(delivery)
        futures: builtins.list[Future[int]] = []
        for sub_id, deliveries in jobs.items():
            if stop is not None and stop.is_set():
                break
            if self._claim(sub_id):
                futures.append(self._pool.submit(self._job, active[sub_id], deliveries, stop))
        return futures

    def step(self, stop: threading.Event | None = None) -> int:
        """One pass that waits for its jobs: the number delivered. A set `stop` ends each job
        between two deliveries (what is left stays due)."""
        return sum(future.result() for future in self.dispatch(stop))

    def _claim(self, sub_id: str) -> bool:
        with self._claims:
            if sub_id in self._busy or len(self._busy) >= self._capacity:
                return False
            self._busy.add(sub_id)
            return True

    def _job(
        self, sub: Subscription, deliveries: builtins.list[Delivery], stop: threading.Event | None
    ) -> int:
        """One subscription's due deliveries, in order, until the first failure."""
        delivered = 0
        try:
            for delivery in deliveries:
                if (stop is not None and stop.is_set()) or not self._attempt(sub, delivery):
                    break
                delivered += 1
        except Exception:  # a database hiccup: what is left stays due
            log.exception("webhook deliveries to %s interrupted; retried later", sub.sub_id)
        finally:
            with self._claims:
                self._busy.discard(sub.sub_id)
        return delivered

    def _attempt(self, sub: Subscription, delivery: Delivery) -> bool:
        at = self.clock()
        status: int | None = None
        error: str | None
        try:
            with self._lock:
                secret = self.store.secret(sub.sub_id)
            target = self.destinations.target(sub.url)
        except SecretKeyError as err:
            outcome, error = "key", str(err)
        except DestinationError as err:
            outcome, error = "refused", str(err)
        except UnresolvedError as err:
            outcome, error = "failed", str(err)
        else:
            status, error = self._post(target, secret, delivery, at)
            outcome = "delivered" if error is None else "failed"
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if error is None:
            with self._lock:
                self.store.record_attempt(delivery, at, status, None, DeliveryStatus.DELIVERED, at)
            return True
        self._failed(sub, delivery, at, status, error)
        return False

    def _post(
        self, target: Target, secret: str, delivery: Delivery, at: float
    ) -> tuple[int | None, str | None]:
        """POST the event to the checked address: (status, None) for a 2xx, else (status or
        None, the error)."""
        body = delivery.body.encode()
        headers = {
            "Host": target.host,
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(secret, int(at), body),
            EVENT_HEADER: delivery.kind.value,
        }
        try:
            with self.client.stream(
                "POST", target.url, content=body, headers=headers, extensions=target.extensions
            ) as response:
                status = response.status_code  # the body is never read: it is not ours
        except httpx.HTTPError as err:
            return None, f"{type(err).__name__}: {err}"
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    def _failed(
        self, sub: Subscription, delivery: Delivery, at: float, status: int | None, error: str
    ) -> None:
        attempt = delivery.attempts + 1
        if attempt >= self.policy.max_attempts:
            log.warning(
                "webhook %s to %s failed for good: %s", delivery.event_id, sub.sub_id, error
            )
            next_status, next_at = DeliveryStatus.FAILED, at
        else:
            next_status, next_at = DeliveryStatus.PENDING, at + self.policy.delay(attempt)
        with self._lock:
            self.store.record_attempt(delivery, at, status, error, next_status, next_at)

    def run(self, stop: threading.Event, poll_interval_s: float = 1.0) -> None:
        """Dispatch a pass every `poll_interval_s` until `stop` is set; jobs run on the pool, so a
        slow receiver never holds up the next pass."""
        while not stop.is_set():
            try:
                self.dispatch(stop)
            except Exception:  # a database hiccup must not end deliveries
                log.exception("webhook pass failed; retrying after the poll interval")
            stop.wait(poll_interval_s)
