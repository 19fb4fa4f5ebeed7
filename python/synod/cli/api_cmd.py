"""`synod api run|token` and `synod audit verify`: serve the API, manage its tokens, check the
audit trail. All take the store from the configuration (`--config`, `SYNOD__STORE__...`) or
`--db URL` (a SQLite path or a PostgreSQL DSN)."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from contextlib import ExitStack
from typing import Any

from synod.config import SynodConfig, load_config


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="F", help="JSON configuration file merged over the default")
    p.add_argument("--db", metavar="URL", help="store: SQLite path or PostgreSQL DSN (or env:NAME)")


def add_parser(sub: Any) -> None:
    api = sub.add_parser("api", help="serve the REST API or manage its tokens")
    actions = api.add_subparsers(dest="api_command", required=True, metavar="{run,token}")
    run = actions.add_parser(
        "run",
        help="serve the REST API (loopback by default)",
        description="Serve the versioned REST API, /metrics (viewer token), /healthz, /readyz "
        "and /docs; and Prometheus metrics without a token on a loopback listener of their own.",
    )
    _store_args(run)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument(
        "--btc-network",
        choices=["mainnet", "testnet", "signet", "regtest"],
        default="mainnet",
        help="network Bitcoin destination addresses must be for",
    )
    run.add_argument("--rate", type=float, default=50.0, help="requests per second per token")
    run.add_argument("--burst", type=int, default=100, help="burst size per token")
    run.add_argument(
        "--client-rate",
        type=float,
        default=5.0,
        help="requests per second per client address without a valid token",
    )
    run.add_argument(
        "--client-burst",
        type=int,
        default=50,
        help="burst size per client address without a valid token",
    )
    run.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="token-free Prometheus listener, or 'off' (default: api.metricsListen, "
        "127.0.0.1:9464)",
    )
    run.add_argument(
        "--metrics-allow-remote",
        action="store_true",
        help="let --metrics-listen bind an address that is not loopback",
    )
    replica = run.add_argument_group(
        "a member's replica",
        "Serve the replicated ledger as a view over a member's replica: reads from --replica "
        "(the member's ledger database), requests signed with the ledger operator key and "
        "sent to the member's validator; --db is then the API's own store (tokens, "
        "idempotency, the audit of its calls, webhooks). All four or none.",
    )
    replica.add_argument("--replica", metavar="URL", help="the member's replica (or env:NAME)")
    replica.add_argument("--ledger-rpc", metavar="URL", help="the member's validator RPC")
    replica.add_argument("--chain-id", help="the ledger's chain id")
    replica.add_argument(
        "--operator-key", metavar="FILE", help="the ledger operator's key (PKCS#8 PEM, 0600)"
    )
    replica.add_argument(
        "--operator", default="api", help="its name in the ledger's committee file"
    )
    run.add_argument("--journal", metavar="PATH", help="consensus journal file")
    run.add_argument("--node-id", default="api", help="name in logs and the audit trail")
    run.add_argument(
        "--node-view",
        metavar="FILE",
        help="JSON file a node publishes (keys, committee, culprits) for /v1/keys, /v1/committee",
    )
    run.set_defaults(run=_run)

    token = actions.add_parser("token", help="create, list or revoke API tokens")
    tokens = token.add_subparsers(
        dest="token_command", required=True, metavar="{create,list,revoke}"
    )
    create = tokens.add_parser(
        "create",
        help="create a token and print it once",
        description="Create an API token. It is printed once; only its hash is stored.",
    )
    _store_args(create)
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    create.add_argument("--name", default="cli", help="a label for the token")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=_token_create)
    listing = tokens.add_parser("list", help="list tokens (ids and roles, never secrets)")
    _store_args(listing)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_token_list)
    revoke = tokens.add_parser("revoke", help="revoke a token by its id")
    _store_args(revoke)
    revoke.add_argument("token_id")
    revoke.set_defaults(run=_token_revoke)

    audit = sub.add_parser("audit", help="check the audit trail")
    audit_actions = audit.add_subparsers(dest="audit_command", required=True, metavar="{verify}")
    verify = audit_actions.add_parser(
        "verify",
        help="recompute the hash chain; name the first row that does not match",
        description="Recompute the audit trail's hash chain. Exit status 0 when it holds, 1 "
        "when a row does not match (named on stderr).",
    )
    _store_args(verify)
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(run=_audit_verify)


def _url(args: argparse.Namespace) -> str:
    """The store: --db (``env:NAME`` reads it from the environment, so a password in it stays
    off the process list), else the configuration's."""
    from synod.api.server import store_url
    from synod.state.db import resolve_url

    return resolve_url(str(args.db)) if args.db else store_url(load_config(args.config))


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from synod.api.app import ApiSettings
    from synod.api.providers import FileNodeView
    from synod.api.server import open_engine, serve
    from synod.chains.bitcoin.address import Network

    if not 0 < args.port < 65536:
        print("synod api run: error: --port must be 1..65535", file=sys.stderr)
        return 2
    if args.rate <= 0 or args.burst < 1 or args.client_rate <= 0 or args.client_burst < 1:
        print(
            "synod api run: error: --rate and --client-rate must be > 0, --burst and "
            "--client-burst >= 1",
            file=sys.stderr,
        )
        return 2
    config = load_config(args.config)
    try:
        metrics = _metrics_listener(args, config)
    except ValueError as err:
        print(f"synod api run: error: {err}", file=sys.stderr)
        return 2
    settings = ApiSettings(
        Network[args.btc_network.upper()],
        args.rate,
        args.burst,
        client_rate_per_second=args.client_rate,
        client_burst=args.client_burst,
    )
    try:
        link = _replica_link(args)
        url = _url(args)
    except ValueError as err:
        print(f"synod api run: error: {err}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        if metrics is not None:
            stack.enter_context(metrics)
        journal = Path(args.journal) if args.journal else None
        engine = open_engine(url, config, journal, link)
        stack.callback(engine.close)
        node = (
            FileNodeView(engine.consensus.ledger, path=Path(args.node_view))
            if args.node_view
            else None
        )
        serve(
            engine, settings, args.host, args.port, node=node, node_id=args.node_id, metrics=metrics
        )
    return 0


def _replica_link(args: argparse.Namespace) -> Any:
    """The member's replica the API serves, or None for the solo ledger in --db;
    ValueError (`CommitteeError` is one) for half of the flags or an unreadable key."""
    from pathlib import Path

    from synod.api.server import ReplicaLink
    from synod.consensus.committee import read_operator_key
    from synod.node.committee import check_mode
    from synod.node.keystore import KeystoreError
    from synod.state.db import resolve_url

    given = {
        "--replica": args.replica,
        "--ledger-rpc": args.ledger_rpc,
        "--chain-id": args.chain_id,
        "--operator-key": args.operator_key,
    }
    if not any(given.values()):
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise ValueError(f"a replica needs {', '.join(missing)} too")
    if not args.ledger_rpc.startswith(("http://", "https://")):
        raise ValueError("--ledger-rpc must be an http:// or https:// URL")
    key_file = Path(args.operator_key)
    try:
        check_mode(key_file)
    except (KeystoreError, OSError) as err:
        raise ValueError(f"--operator-key: {err}") from None
    key = read_operator_key(key_file)
    return ReplicaLink(
        resolve_url(args.replica), args.ledger_rpc, args.chain_id, args.operator, key
    )


def _metrics_listener(args: argparse.Namespace, config: SynodConfig) -> socket.socket | None:
    """The bound socket of the token-free metrics listener, or None when it is off; the flags
    win over `api.metricsListen` and `api.metricsAllowRemote`. ValueError says why it cannot
    be."""
    from synod.api.server import bind_metrics, metrics_endpoint

    listen = args.metrics_listen or config.api.metrics_listen
    try:
        endpoint = metrics_endpoint(
            listen, args.metrics_allow_remote or config.api.metrics_allow_remote
        )
    except ValueError as err:
        raise ValueError(f"metrics listener {listen[:80]!r}: {err}") from None
    if endpoint is None:
        return None
    try:
        return bind_metrics(endpoint)
    except OSError as err:
        raise ValueError(
            f"cannot listen for metrics on {listen}: {err.strerror or err} "
            "(--metrics-listen HOST:PORT, or off)"
        ) from None


def _tokens(args: argparse.Namespace) -> Any:
    from synod.api.auth import TokenStore
    from synod.state.db import open_database

    return TokenStore(open_database(_url(args)))


def _token_create(args: argparse.Namespace) -> int:
    from synod.api.auth import Role
    from synod.state.audit import AuditAction, AuditLog

    store = _tokens(args)
    try:
        secret, record = store.create(Role(args.role), args.name)
    except ValueError as err:
        print(f"synod api token create: error: {err}", file=sys.stderr)
        return 2
    AuditLog(store.db).append(
        "cli", AuditAction.TOKEN, {"created": record.token_id, "role": record.role.value}
    )
    if args.json:
        print(json.dumps({"token": secret, "token_id": record.token_id, "role": record.role}))
    else:
        print(secret)
        print(
            f"token {record.token_id} ({record.role}): shown once, store it now",
            file=sys.stderr,
        )
    return 0


def _token_list(args: argparse.Namespace) -> int:
    rows = [
        {"token_id": t.token_id, "role": t.role.value, "name": t.name, "revoked": t.revoked}
        for t in _tokens(args).list()
    ]
    if args.json:
        print(json.dumps(rows))
    for r in [] if args.json else rows:
        state = "revoked" if r["revoked"] else "live"
        print(f"{r['token_id']}  {r['role']:<8}  {state:<7}  {r['name']}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from synod.state.audit import AuditAction, AuditLog

    store = _tokens(args)
    if not store.revoke(args.token_id):
        print(f"synod api token revoke: error: no token {args.token_id!r}", file=sys.stderr)
        return 2
    AuditLog(store.db).append("cli", AuditAction.TOKEN, {"revoked": args.token_id})
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from synod.state.audit import AuditLog
    from synod.state.db import open_database

    result = AuditLog(open_database(_url(args))).verify()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "rows": result.rows,
                    "head_hash": result.head_hash,
                    "first_bad": result.first_bad,
                    "problem": result.problem or None,
                }
            )
        )
    if result.ok:
        if not args.json:
            print(f"ok: {result.rows} rows, head {result.head_hash}")
        return 0
    print(
        f"synod audit verify: row {result.first_bad} does not match: {result.problem} "
        f"({result.rows} rows before it hold)",
        file=sys.stderr,
    )
    return 1
