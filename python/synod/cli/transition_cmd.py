"""`synod transition start|status`: open a power transition (a `SignerSetUpdate` through
consensus) and show every transition's state, migration transactions, switch window and
culprits. The store comes from the configuration (`--config`, `SYNOD__STORE__...`) or
`--db URL` (a SQLite path or a PostgreSQL DSN)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from synod.config import load_config


def add_parser(sub: Any) -> None:
    tr = sub.add_parser("transition", help="start or inspect power transitions")
    actions = tr.add_subparsers(dest="transition_command", required=True, metavar="{start,status}")
    start = actions.add_parser(
        "start",
        help="propose the next signer set (opens a transition at the trigger ratio or --force)",
        description="Submit a SignerSetUpdate. Members over the strike limit are left out; a "
        "transition opens when the change reaches transition.triggerChangeRatio, the "
        "threshold changes, or --force is given.",
    )
    _store_args(start)
    start.add_argument("--members", required=True, help="member ids, comma-separated")
    start.add_argument("--threshold", required=True, type=int)
    start.add_argument("--reason", default="operator request")
    start.add_argument(
        "--force", action="store_true", help="open a transition even below the ratio"
    )
    start.add_argument("--json", action="store_true")
    start.set_defaults(run=_start)
    status = actions.add_parser("status", help="every transition, newest last")
    _store_args(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(run=_status)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="F", help="JSON configuration file merged over the default")
    p.add_argument("--db", metavar="URL", help="store: SQLite path or PostgreSQL DSN")


def _ledger(args: argparse.Namespace) -> Any:
    from synod.api.server import store_url
    from synod.state.db import open_database
    from synod.state.machine import Ledger

    config = load_config(args.config)
    url = str(args.db) if args.db else store_url(config)
    ledger = Ledger.from_config(
        open_database(url), config.chains, config.withdraw, config.transition
    )
    return ledger, url


def _start(args: argparse.Namespace) -> int:
    from synod.api.server import default_journal
    from synod.runtime.consensus import SoloConsensus
    from synod.runtime.journal import Journal
    from synod.state import errors as E
    from synod.state.transactions import SignerSetUpdate

    try:
        members = tuple(int(m) for m in args.members.split(",") if m.strip())
    except ValueError:
        print("synod transition start: error: --members is a list like 4,5,6", file=sys.stderr)
        return 2
    try:
        tx = SignerSetUpdate(members, args.threshold, args.reason, args.force)
        tx.validate()
    except E.Rejected as err:
        print(f"synod transition start: error: {err.message}", file=sys.stderr)
        return 2
    ledger, url = _ledger(args)
    consensus = SoloConsensus(ledger, Journal(default_journal(url)))
    try:
        receipt = consensus.submit(tx)
    except E.Rejected as err:
        print(f"synod transition start: error: {err}", file=sys.stderr)
        return 2
    result = receipt.result if receipt is not None else {"queued": True}
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif result.get("opened"):
        print(f"transition to epoch {result['epoch']} opened ({result['state']})")
    else:
        print(f"signer set recorded; change {result.get('change_ratio', 0):.0%}, no transition")
    return 0


def _status(args: argparse.Namespace) -> int:
    ledger, _ = _ledger(args)
    data = ledger.transitions.report()
    if args.json:
        print(json.dumps(data, sort_keys=True))
        return 0
    print(f"active epoch {data['active_epoch']}")
    for t in data["transitions"]:
        window = t["switch_window_ms"]
        print(
            f"epoch {t['epoch']} (from {t['from_epoch']}): {t['state']}, "
            f"{t['threshold']}-of-{len(t['members'])} {t['members']}, attempt {t['attempt']}, "
            f"window {'-' if window is None else f'{window} ms'}, culprits {t['culprits']}"
        )
        for m in t["migrations"]:
            print(f"  {m['chain']}:{m['asset']} {m['amount']} {m['status']} {m['txid'] or ''}")
    if data["strikes"]:
        print(f"strikes (limit {data['strike_limit']}): {data['strikes']}")
    return 0
