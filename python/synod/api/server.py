"""Serving the API: open the store, build the app, run uvicorn (loopback by default)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
from fastapi import FastAPI

from synod import logs
from synod.api.app import ApiSettings, create_app
from synod.api.auth import TokenStore
from synod.api.providers import NodeView
from synod.config import SynodConfig
from synod.runtime.consensus import LocalConsensus
from synod.runtime.journal import Journal
from synod.state.audit import AuditAction, AuditLog
from synod.state.db import PostgresDatabase, SqliteDatabase, open_database
from synod.state.machine import Ledger


def store_url(config: SynodConfig) -> str:
    """The ledger store the configuration names."""
    if config.store.backend == "postgres":
        return str(config.store.postgres_dsn)
    return config.store.sqlite_path


def default_journal(url: str) -> Path:
    """The consensus journal beside a SQLite store, or in the working directory."""
    if url.startswith(("postgresql://", "postgres://", "dbname=")) or "=" in url:
        return Path("synod-api.journal")
    return Path(url.removeprefix("sqlite:///").removeprefix("sqlite://") + ".api-journal")


@dataclass
class Engine:
    """What one API process holds open."""

    db: SqliteDatabase | PostgresDatabase
    consensus: LocalConsensus
    tokens: TokenStore
    audit: AuditLog

    def close(self) -> None:
        self.consensus.journal.close()
        self.db.close()


def open_engine(url: str, config: SynodConfig, journal: Path | None = None) -> Engine:
    db = open_database(url)
    audit = AuditLog(db)
    ledger = Ledger.from_config(db, config.chains, config.withdraw)
    consensus = LocalConsensus(ledger, Journal(journal or default_journal(url)), audit)
    return Engine(db, consensus, TokenStore(db), audit)


def build_app(engine: Engine, settings: ApiSettings, node: NodeView | None = None) -> FastAPI:
    return create_app(engine.consensus, engine.tokens, engine.audit, node, settings)


def serve(
    engine: Engine,
    settings: ApiSettings,
    host: str,
    port: int,
    node: NodeView | None = None,
    node_id: str = "api",
) -> None:
    """Run until interrupted; the start and the stop are audit rows."""
    logs.configure(logging.INFO, node_id)
    app = build_app(engine, settings, node)
    engine.audit.append(
        node_id, AuditAction.NODE_START, {"role": "api", "host": host, "port": port}
    )
    structlog.get_logger("synod.api").info(
        "api serving", url=f"http://{host}:{port}", docs=f"http://{host}:{port}/docs"
    )
    try:
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
