"""Serving the API: open the store, build the app, run uvicorn (loopback by default), with the
webhook delivery loop beside it."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import NoReturn

import structlog
import uvicorn
from fastapi import FastAPI

from synod import logs
from synod.api.app import ApiSettings, create_app
from synod.api.auth import TokenStore
from synod.api.providers import NodeView
from synod.api.webhooks import webhook_router
from synod.config import SynodConfig
from synod.runtime.consensus import LocalConsensus
from synod.runtime.journal import Journal
from synod.runtime.webhooks import Policy, Webhooks
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


@dataclass
class Engine:
    """What one API process holds open."""

    url: str
    db: SqliteDatabase | PostgresDatabase
    consensus: LocalConsensus
    tokens: TokenStore
    audit: AuditLog
    webhooks: Webhooks  # subscriptions, on `db`; deliveries run on a connection of their own

    def close(self) -> None:
        self.webhooks.close()
        self.consensus.journal.close()
        self.db.close()


def open_engine(url: str, config: SynodConfig, journal: Path | None = None) -> Engine:
    db = open_database(url)
    audit = AuditLog(db)
    ledger = Ledger.from_config(db, config.chains, config.withdraw, config.transition)
    consensus = LocalConsensus(ledger, Journal(journal or default_journal(db)), audit)
    webhooks = Webhooks(db, Policy.from_config(config.webhooks))
    return Engine(url, db, consensus, TokenStore(db), audit, webhooks)


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
    """`Webhooks.run` in a thread on its own connection to the engine's store, for the span of
    the block; on the way out it is told to stop (it finishes at most the attempt under way),
    joined, and its connection closed."""
    db = open_database(engine.url)
    deliverer = Webhooks(db, engine.webhooks.policy)
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


def serve(
    engine: Engine,
    settings: ApiSettings,
    host: str,
    port: int,
    node: NodeView | None = None,
    node_id: str = "api",
) -> None:
    """Run until interrupted, webhook deliveries beside; the start and the stop are audit
    rows."""
    logs.configure(logging.INFO, node_id)
    app = build_app(engine, settings, node)
    engine.audit.append(
        node_id, AuditAction.NODE_START, {"role": "api", "host": host, "port": port}
    )
    structlog.get_logger("synod.api").info(
        "api serving", url=f"http://{host}:{port}", docs=f"http://{host}:{port}/docs"
    )
    try:
        with _sigterm_unwinds(), webhook_delivery(engine):
            uvicorn.run(
                app,
                host=host,
                port=port,
                access_log=False,
                log_level="warning",
                server_header=False,
            )
    finally:
        engine.audit.append(node_id, AuditAction.NODE_STOP, {"role": "api"})
