"""`synod config`: show or check the effective configuration.

The effective configuration is the packaged default, then the optional ``--file``, then the
``SYNOD__<SECTION>__<KEY>`` environment variables (see :mod:`synod.config`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from synod.cli.output import print_fields
from synod.config import ConfigError, SynodConfig, load_config


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "config",
        help="show or check the effective configuration",
        description="Load the packaged default configuration, deep-merge an optional JSON file "
        "over it, apply SYNOD__<SECTION>__<KEY> environment variables, and show or check the "
        "result.",
    )
    actions = p.add_subparsers(dest="config_command", required=True, metavar="{show,check}")
    show = actions.add_parser(
        "show",
        help="print the effective configuration",
        description="Print the effective configuration, one dotted key per line.",
    )
    show.add_argument("--file", metavar="F", help="JSON file merged over the default")
    show.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    show.set_defaults(run=run_show)
    check = actions.add_parser(
        "check",
        help="validate the effective configuration",
        description="Validate the effective configuration: print ok, or one error line on "
        "stderr and exit with status 2.",
    )
    check.add_argument("--file", metavar="F", help="JSON file merged over the default")
    check.set_defaults(run=run_check)


def _load(args: argparse.Namespace) -> SynodConfig | None:
    try:
        return load_config(args.file)
    except ConfigError as err:
        print(f"synod config: error: {err}", file=sys.stderr)
        return None


def run_show(args: argparse.Namespace) -> int:
    cfg = _load(args)
    if cfg is None:
        return 2
    data = cfg.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print_fields([(key, json.dumps(value)) for key, value in _flatten(data, "")])
    return 0


def run_check(args: argparse.Namespace) -> int:
    if _load(args) is None:
        return 2
    print("ok")
    return 0


def _flatten(data: dict[str, Any], prefix: str) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, f"{path}.")
        else:
            rows.append((path, value))
    return rows
