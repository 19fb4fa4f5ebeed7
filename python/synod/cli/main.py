"""Entry point of the `synod` command: one sub-command per job."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from synod.config import ConfigError
from synod.crypto.errors import CryptoError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from synod.cli import (
        api_cmd,
        ceremony,
        client_cmd,
        cluster,
        committee,
        config_cmd,
        demo,
        keygen,
        member,
        node,
        sim,
        transition_cmd,
    )

    parser = _Parser(prog="synod", description="Threshold-signing custody engine.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    keygen.add_parser(sub)
    sim.add_parser(sub)
    config_cmd.add_parser(sub)
    demo.add_parser(sub)
    api_cmd.add_parser(sub)
    client_cmd.add_parser(sub)
    transition_cmd.add_parser(sub)
    committee.add_parser(sub)
    member.add_parser(sub)
    node.add_parser(sub)
    cluster.add_parser(sub)
    ceremony.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except CryptoError as err:
        print(f"synod: error: {err}", file=sys.stderr)
        return 1
    except ConfigError as err:  # invalid configuration: named key, nothing started
        print(f"synod: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synod: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
