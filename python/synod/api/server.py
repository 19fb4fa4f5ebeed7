"""Serving the API: open the store, build the app, run uvicorn (loopback by default), with the
webhook delivery loop beside it and, when asked, a token-free Prometheus listener of its own."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import NoReturn

import structlog
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from prometheus_client import make_asgi_app

from synod import logs
from synod.api.app import ApiSettings, create_app, metrics_registry
from synod.api.auth import TokenStore, prepare_api_store
from synod.api.providers import NodeView
from synod.api.webhooks import webhook_router
from synod.config import SynodConfig, is_loopback, parse_listen
from synod.consensus.client import CometRpc, ReplicatedConsensus
from synod.runtime.consensus import JournaledConsensus, SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.webhooks import Webhooks
from synod.state.audit import AuditAction, AuditLog
from synod.state.db import PostgresDatabase, SqliteDatabase, open_database
from synod.state.machine import Ledger


def store_url(config: SynodConfig) -> str:
    """The ledger store the configuration names."""
    if config.store.backend == "postgres":
        return str(config.store.postgres_dsn)
    return config.store.sqlite_path


def default_journal(db: SqliteDatabase | PostgresDatabase) -> Path:
    """The consensus journal beside a SQLite store, or in the working directory."""
    if isinstance(db, SqliteDatabase):
        return Path(db.path + ".api-journal")
    return Path("synod-api.journal")


@dataclass(frozen=True)
class ReplicaLink:
    """The API as a view over a member's replica of the replicated ledger: reads from
    `replica` (the member's ledger database, which its ledger application writes), requests
    signed with the ledger operator key `operator_key` as ``operator:<operator>`` and sent to
    the member's validator at `rpc`."""

    replica: str
    rpc: str
    chain_id: str
    operator: str
    operator_key: Ed25519PrivateKey = field(repr=False)


@dataclass
class Engine:
    """What one API process holds open: its own store `db` (tokens, idempotency records, the
    audit of its calls, webhook subscriptions) and the ledger it serves, which is `db` itself
    on the solo orderer, or a member's replica (`replica`)."""

    url: str
    db: SqliteDatabase | PostgresDatabase
    consensus: JournaledConsensus
    tokens: TokenStore
    audit: AuditLog
    webhooks: Webhooks  # subscriptions, on `db`; deliveries run on a connection of their own
    replica: SqliteDatabase | PostgresDatabase | None = None
    replica_url: str | None = None

    def close(self) -> None:
        self.webhooks.close()
        self.consensus.journal.close()
        if self.replica is not None:
            self.replica.close()
        self.db.close()


def open_engine(
    url: str, config: SynodConfig, journal: Path | None = None, link: ReplicaLink | None = None
) -> Engine:
    db = open_database(url)
    replica = None if link is None else open_database(link.replica)
    try:
        prepare_api_store(db)
        # `WebhookKeyError` without its key; on a replica, the events come from it
        webhooks = Webhooks.from_config(db, config, replica)
    except BaseException:
        db.close()
        if replica is not None:
            replica.close()
        raise
    audit = AuditLog(db)
    journal_file = Journal(journal or default_journal(db))
    if link is None or replica is None:
        ledger = Ledger.from_config(db, config.chains, config.withdraw, config.transition)
        consensus: JournaledConsensus = SoloConsensus(ledger, journal_file, audit)
        return Engine(url, db, consensus, TokenStore(db), audit, webhooks)
    ledger = Ledger.from_config(replica, config.chains, config.withdraw, config.transition)
    orderer = ReplicatedConsensus(
        CometRpc(link.rpc, timeout_s=10.0), f"operator:{link.operator}", link.operator_key,
        link.chain_id,
    )  # fmt: skip
    consensus = JournaledConsensus(ledger, orderer, journal_file)  # journaled: the next drains
    return Engine(url, db, consensus, TokenStore(db), audit, webhooks, replica, link.replica)


def build_app(engine: Engine, settings: ApiSettings, node: NodeView | None = None) -> FastAPI:
    return create_app(
        engine.consensus,
        engine.tokens,
        engine.audit,
        node,
        settings,
        extra_routers=[partial(webhook_router, engine.webhooks)],
    )


WEBHOOK_POLL_S = 1.0


@contextmanager
def webhook_delivery(engine: Engine, poll_interval_s: float = WEBHOOK_POLL_S) -> Iterator[None]:
    """`Webhooks.run` in a thread on its own connection to the engine's store (its pool's
    workers beside it), for the span of the block; on the way out it is told to stop (each
    worker finishes at most the attempt under way), joined, and its connection closed."""
    db = open_database(engine.url)
    ledger = None if engine.replica_url is None else open_database(engine.replica_url)
    deliverer = Webhooks(db, engine.webhooks.policy, box=engine.webhooks.store.box, ledger=ledger)
    stop = threading.Event()
    thread = threading.Thread(
        target=deliverer.run, args=(stop, poll_interval_s), name="synod-webhooks", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        deliverer.close()
        db.close()
        if ledger is not None:
            ledger.close()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """uvicorn stops on SIGTERM and then raises the signal again; with the default handler that
    would end the process before the delivery loop is joined and the stop is audited. Here it
    becomes a `SystemExit` that unwinds through both."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def metrics_endpoint(listen: str, allow_remote: bool = False) -> tuple[str, int] | None:
    """Where the token-free metrics listener binds: `listen` ("HOST:PORT" or "off") parsed.
    ValueError for a malformed one, and for a host that is not loopback unless `allow_remote`
    (the metrics name withdrawals, latencies and culprits to whoever connects)."""
    endpoint = parse_listen(listen)
    if endpoint is not None and not allow_remote and not is_loopback(endpoint[0]):
        raise ValueError(
            f"{endpoint[0]} is not a loopback address: metrics need no token there "
            "(allow it with --metrics-allow-remote or api.metricsAllowRemote)"
        )
    return endpoint


def bind_metrics(endpoint: tuple[str, int]) -> socket.socket:
    """The listening socket of the metrics listener (OSError when it cannot be bound), bound
    before the API starts so a taken port stops the start instead of a scrape failing."""
    host, port = endpoint
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class _Beside(uvicorn.Server):
    """A server in the event loop of another, which owns the signals."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _ApiServer(uvicorn.Server):
    """The API's server, with the metrics server (if any, on its bound socket) in the same
    event loop: handlers of both run one at a time, as the store's single connection needs,
    and the metrics server stops when the API does."""

    def __init__(
        self, config: uvicorn.Config, metrics: tuple[_Beside, socket.socket] | None
    ) -> None:
        super().__init__(config)
        self.beside = metrics

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.beside is None:
            await super().serve(sockets)
            return
        metrics, listening = self.beside
        task = asyncio.create_task(metrics.serve([listening]))
        try:
            await super().serve(sockets)
        finally:
            metrics.should_exit = True
            await task


def _metrics_server(engine: Engine) -> _Beside:
    """Prometheus's own ASGI exposition of `metrics_registry`, without a token."""
    app = make_asgi_app(metrics_registry(engine.consensus))
    return _Beside(
        uvicorn.Config(
            app, access_log=False, log_level="warning", server_header=False, lifespan="off"
        )
    )


def serve(
    engine: Engine,
    settings: ApiSettings,
    host: str,
    port: int,
    node: NodeView | None = None,
    node_id: str = "api",
    metrics: socket.socket | None = None,
) -> None:
    """Run until interrupted, webhook deliveries beside, and Prometheus metrics without a
    token on the listening socket `metrics` (`bind_metrics`) if given, until the API stops;
    the start and the stop are audit rows."""
    logs.configure(logging.INFO, node_id)
    app = build_app(engine, settings, node)
    scrape_url = None
    if metrics is not None:
        bound_host, bound_port = metrics.getsockname()[:2]
        scrape_url = f"http://{_url_host(bound_host)}:{bound_port}/metrics"
    engine.audit.append(
        node_id,
        AuditAction.NODE_START,
        {"role": "api", "host": host, "port": port, "metrics": scrape_url},
    )
    structlog.get_logger("synod.api").info(
        "api serving",
        url=f"http://{host}:{port}",
        docs=f"http://{host}:{port}/docs",
        metrics=scrape_url,
    )
    config = uvicorn.Config(
        app, host=host, port=port, access_log=False, log_level="warning", server_header=False
    )
    beside = None if metrics is None else (_metrics_server(engine), metrics)
    server = _ApiServer(config, beside)
    try:
        with _sigterm_unwinds(), webhook_delivery(engine), suppress(KeyboardInterrupt):
            server.run()
    finally:
        engine.audit.append(node_id, AuditAction.NODE_STOP, {"role": "api"})


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
