"""``python -m synod.consensus serve``: run one node's ledger application for its CometBFT
validator (which dials it at ``proxy_app``). Exit status 2 on bad arguments or configuration."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from prometheus_client import start_http_server

from synod.config import ConfigError, load_config
from synod.consensus.abci.server import AbciServer
from synod.consensus.app import LedgerApp
from synod.consensus.committee import Committee, CommitteeError
from synod.consensus.metrics import ledger_registry
from synod.state.audit import AuditLog
from synod.state.db import open_database, resolve_url
from synod.state.machine import Ledger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synod.consensus")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the ledger application over ABCI")
    serve.add_argument(
        "--db",
        required=True,
        help="sqlite:///path or a PostgreSQL DSN, or env:NAME for the variable that holds it",
    )
    serve.add_argument("--committee", required=True, help="the committee file (JSON)")
    serve.add_argument(
        "--config",
        help="synod configuration (JSON) for the ledger's rules: fees, EOA-mode chains, "
        "withdraw.maxRequest, transition rules; every member must run the same (default: the "
        "packaged one)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=26658)
    serve.add_argument(
        "--metrics-port",
        type=int,
        help="serve the replica's ledger metrics (height, witnessed facts by status, "
        "disagreements) on http://127.0.0.1:PORT/metrics",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        committee = Committee.load(args.committee)
        config = load_config(args.config, env={})  # rules from the file only, never the env
    except (CommitteeError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.metrics_port is not None and not 1 <= args.metrics_port <= 65535:
        print("error: --metrics-port must be within 1..65535", file=sys.stderr)
        return 2
    try:
        args.db = resolve_url(args.db)
    except ValueError as err:
        print(f"error: --db: {err}", file=sys.stderr)
        return 2
    if args.db.startswith("sqlite:///:memory:") or args.db == ":memory:":
        print("error: the ledger needs a durable store, not :memory:", file=sys.stderr)
        return 2
    db = open_database(args.db)
    ledger = Ledger.from_config(db, config.chains, config.withdraw, config.transition)
    # The replica's own audit trail: a row per transaction applied, written in the block.
    app = LedgerApp(db, open_database(args.db), committee, ledger, AuditLog(db))
    server = AbciServer(app, args.host, args.port)
    exporter = None
    if args.metrics_port is not None:
        exporter, _ = start_http_server(
            args.metrics_port, addr="127.0.0.1", registry=ledger_registry(open_database(args.db))
        )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"synod ledger application on {args.host}:{server.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if exporter is not None:
            exporter.shutdown()
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
