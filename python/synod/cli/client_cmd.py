"""`synod withdraw create|get|list|cancel`, `synod deposits`, `synod balances`, `synod webhooks
create|list|delete|deliveries`: the API from the command line.

The API is `--api URL` or `SYNOD_API_URL` (default http://127.0.0.1:8080); the token is
`SYNOD_API_TOKEN` or the first line of `--token-file F` (never an argument: it would show in
the process list). A request the API refuses as invalid (4xx) exits with status 2 and its one-
line reason; an unreachable API or a server error exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_API = "http://127.0.0.1:8080"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=os.environ.get("SYNOD_API_URL", DEFAULT_API), help="API URL")
    p.add_argument("--token-file", metavar="F", help="file holding the API token")
    p.add_argument("--json", action="store_true", help="print the API's JSON")


def add_parser(sub: Any) -> None:
    w = sub.add_parser("withdraw", help="submit, read, list or cancel withdrawals over the API")
    actions = w.add_subparsers(
        dest="withdraw_command", required=True, metavar="{create,get,list,cancel}"
    )
    create = actions.add_parser("create", help="submit a withdrawal")
    _common(create)
    create.add_argument("--chain", required=True)
    create.add_argument("--asset", required=True)
    create.add_argument("--to", required=True, dest="destination", help="destination address")
    create.add_argument("--amount", required=True, help="decimal string of base units")
    create.add_argument("--external-id", required=True)
    create.add_argument("--idempotency-key")
    create.add_argument(
        "--wait",
        type=float,
        default=10.0,
        help="seconds the API may wait for the ledger's block (at most 30; 0: answer at once, "
        "PENDING on a replicated ledger)",
    )
    create.set_defaults(run=_cmd(_create))
    get = actions.add_parser("get", help="one withdrawal with its history")
    _common(get)
    get.add_argument("id")
    get.set_defaults(run=_cmd(lambda c, a: c.withdrawal(a.id)))
    listing = actions.add_parser("list", help="list withdrawals (one page)")
    _common(listing)
    listing.add_argument("--state")
    listing.add_argument("--chain")
    listing.add_argument("--asset")
    listing.add_argument("--external-id")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor")
    listing.set_defaults(run=_cmd(_list))
    cancel = actions.add_parser("cancel", help="cancel a withdrawal still queued")
    _common(cancel)
    cancel.add_argument("id")
    cancel.add_argument("--reason")
    cancel.set_defaults(run=_cmd(lambda c, a: c.cancel(a.id, a.reason)))

    deposits = sub.add_parser("deposits", help="credited deposits over the API")
    _common(deposits)
    deposits.add_argument("--chain")
    deposits.add_argument("--asset")
    deposits.add_argument("--limit", type=int, default=50)
    deposits.add_argument("--cursor")
    deposits.set_defaults(
        run=_cmd(
            lambda c, a: c.deposits(chain=a.chain, asset=a.asset, limit=a.limit, cursor=a.cursor)
        )
    )
    balances = sub.add_parser("balances", help="balances per chain and asset over the API")
    _common(balances)
    balances.set_defaults(run=_cmd(lambda c, a: c.balances()))
    _webhooks_parser(sub)


def _webhooks_parser(sub: Any) -> None:
    from synod.state.webhooks import EventKind

    hooks = sub.add_parser("webhooks", help="webhook subscriptions over the API")
    actions = hooks.add_subparsers(
        dest="webhooks_command", required=True, metavar="{create,list,delete,deliveries}"
    )
    create = actions.add_parser(
        "create",
        help="subscribe a URL to events (admin); prints the signing secret once",
        description="Subscribe an http(s) URL to events. The answer holds the HMAC secret the "
        "deliveries are signed with; it is shown this once.",
    )
    _common(create)
    create.add_argument("url")
    create.add_argument(
        "--event",
        dest="events",
        action="append",
        required=True,
        choices=[k.value for k in EventKind],
        help="an event kind (repeat for several)",
    )
    create.set_defaults(run=_cmd(lambda c, a: c.create_webhook(a.url, a.events), _hooks_text))
    listing = actions.add_parser("list", help="list subscriptions (never their secrets)")
    _common(listing)
    listing.set_defaults(run=_cmd(lambda c, a: c.webhooks(), _hooks_text))
    delete = actions.add_parser("delete", help="unsubscribe (admin)")
    _common(delete)
    delete.add_argument("id")
    delete.set_defaults(run=_cmd(lambda c, a: c.delete_webhook(a.id), _hooks_text))
    log = actions.add_parser(
        "deliveries", help="a subscription's deliveries (or, with --attempts, its attempt log)"
    )
    _common(log)
    log.add_argument("id")
    log.add_argument("--attempts", action="store_true", help="every attempt, newest first")
    log.add_argument("--limit", type=int, default=50)
    log.set_defaults(
        run=_cmd(
            lambda c, a: c.webhook_log(a.id, "attempts" if a.attempts else "deliveries", a.limit),
            _hooks_text,
        )
    )


def _create(client: Any, a: argparse.Namespace) -> Any:
    return client.create_withdrawal(
        a.chain, a.asset, a.destination, a.amount, a.external_id, a.idempotency_key,
        min(max(a.wait, 0.0), 30.0),
    )  # fmt: skip


def _list(client: Any, a: argparse.Namespace) -> Any:
    return client.withdrawals(
        state=a.state,
        chain=a.chain,
        asset=a.asset,
        external_id=a.external_id,
        limit=a.limit,
        cursor=a.cursor,
    )


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError):
            return None
    return os.environ.get("SYNOD_API_TOKEN") or None


def _cmd(
    call: Callable[[Any, argparse.Namespace], Any],
    text: Callable[[dict[str, Any]], str] | None = None,
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import httpx

        from synod.api.client import ApiClient, ApiError

        action = getattr(args, "withdraw_command", None) or getattr(args, "webhooks_command", None)
        prog = f"synod {args.command}" + (f" {action}" if action else "")
        token = _token(args)
        if not token:
            print(
                f"{prog}: error: no API token (set SYNOD_API_TOKEN or --token-file)",
                file=sys.stderr,
            )
            return 2
        client = ApiClient(args.api, token)
        try:
            result = call(client, args)
        except ApiError as err:
            print(f"{prog}: error: {err}", file=sys.stderr)
            return 2 if 400 <= err.status < 500 and err.status != 429 else 1
        except httpx.HTTPError as err:
            print(f"{prog}: error: cannot reach the API at {args.api}: {err}", file=sys.stderr)
            return 1
        finally:
            client.close()
        print(json.dumps(result, indent=2) if args.json else (text or _text)(result))
        return 0

    return run


def _text(result: dict[str, Any]) -> str:
    """A short human view: one line per item (or the object's main fields)."""
    items = result.get("items")
    if items is None:
        items = [result]
    lines = []
    for item in items:
        if "state" in item:
            lines.append(
                f"{item['id']}  {item['state']:<9}  {item['chain']}/{item['asset']}  "
                f"{item['amount']} -> {item['destination']}  ext={item['external_id']}"
                + (f"  txid={item['txid']}" if item.get("txid") else "")
            )
        elif "deposited" in item:
            lines.append(
                f"{item['chain']}/{item['asset']}: deposited {item['deposited']} = available "
                f"{item['available']} + reserved {item['reserved']} + withdrawn "
                f"{item['withdrawn']} + fees {item['fees']} + external {item['external']}"
            )
        else:
            lines.append(
                f"{item['chain']}/{item['asset']}  {item['amount']}  ref={item['ref']}  "
                f"height={item['height']}"
            )
    if result.get("next_cursor"):
        lines.append(f"(more: --cursor {result['next_cursor']})")
    return "\n".join(lines) if lines else "(none)"


def _hooks_text(result: dict[str, Any]) -> str:
    """Subscriptions, deliveries or attempts, one line each; a new subscription's secret."""
    items = result.get("items", [result])
    lines = []
    for item in items:
        if "url" in item:
            state = "active" if item["active"] else "inactive"
            lines.append(f"{item['id']}  {state:<8}  {','.join(item['events'])}  {item['url']}")
        elif "attempt" in item:
            outcome = item["status_code"] if item["status_code"] is not None else item["error"]
            lines.append(f"{item['event_id']}  attempt {item['attempt']}  {outcome}")
        else:
            error = f"  {item['last_error']}" if item["last_error"] else ""
            lines.append(
                f"{item['event_id']}  {item['type']:<24}  {item['status']:<9}  "
                f"attempts={item['attempts']}{error}"
            )
    if "secret" in result:
        lines.append(f"secret {result['secret']}  (shown once: store it now)")
    return "\n".join(lines) if lines else "(none)"
