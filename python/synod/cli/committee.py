"""`synod committee init`: a development committee on disk (CA, member directories, manifest)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synod.cli.progress import Progress
from synod.processes import forbid_core_dumps


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "committee",
        help="create a development committee",
        description="Committee material: a development CA, one directory per member, the manifest.",
    )
    actions = p.add_subparsers(dest="committee_command", required=True, metavar="{init}")
    init = actions.add_parser(
        "init",
        help="create a development committee on 127.0.0.1",
        description="Create DIR/ca (the development CA; its key never enters a member "
        "directory), DIR/manifest.json, DIR/operator (the control-service client certificate) "
        "and DIR/node-<i> for every member: an encrypted keystore with its identity and TLS "
        "keys, its certificate, the CA certificate and the manifest. Member i listens on "
        "127.0.0.1:BASE+i. DEVELOPMENT ONLY: each member directory also gets a random keystore "
        "passphrase in the file 'passphrase' (mode 0600) so `synod cluster up` can start it; "
        "a real deployment gives the passphrase by file or environment and deletes that file.",
    )
    init.add_argument("-t", "--threshold", type=int, required=True, help="signers needed")
    init.add_argument("-n", "--members", type=int, required=True, help="committee size")
    init.add_argument("--dir", required=True, type=Path, help="directory to create (empty)")
    init.add_argument("--base-port", type=int, default=7100, help="member i listens on BASE+i")
    init.add_argument(
        "--validators",
        action="store_true",
        help="also a replicated ledger: per member a CometBFT validator with the ledger "
        "application over the member's own replica DIR/node-<i>/ledger.db (its ledger view), "
        "one genesis under DIR/ledger, and a development operator key for user requests in "
        "DIR/operator; CometBFT is built on first use ($SYNOD_COMETBFT_DIR to use another)",
    )
    init.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    init.set_defaults(run=run_init)


def run_init(args: argparse.Namespace) -> int:
    from synod.node.committee import CommitteeError, init_committee, node_dir
    from synod.node.keystore import KeystoreError
    from synod.node.manifest import ManifestError

    t, n = args.threshold, args.members
    problem = None
    if n < 1 or n > 255:
        problem = f"a local committee has 1 to 255 members (got {n})"
    elif not 1 <= t <= n:
        problem = f"threshold must be between 1 and {n} (got {t})"
    if problem:
        print(f"synod committee init: error: {problem}", file=sys.stderr)
        return 2
    progress = Progress()
    cometbft = None
    if args.validators:
        from synod.chains.localnode import NodeUnavailable, binary_dir

        progress.step("validators: CometBFT (built on first use, about two minutes)")
        try:
            cometbft = binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
        except NodeUnavailable as err:
            print(f"synod committee init: error: {err}", file=sys.stderr)
            return 1
    try:
        forbid_core_dumps()  # the CA key and every member's keys pass through this process
        manifest = init_committee(args.dir, t, n, args.base_port, progress=progress.step)
    except (CommitteeError, KeystoreError, ManifestError, OSError) as err:
        print(f"synod committee init: error: {err}", file=sys.stderr)
        return 2
    root: Path = args.dir
    ledger = None
    if cometbft is not None:
        from synod.node.local_cluster import LEDGER_DIR, LEDGER_OPERATOR_KEY, init_validators

        init_validators(root, cometbft)
        ledger = {
            "dir": str(root / LEDGER_DIR),
            "operator_key": str(root / "operator" / LEDGER_OPERATOR_KEY),
        }
        progress.step(f"validators: genesis and one CometBFT home per member in {ledger['dir']}")
    members = [
        {
            "id": m.id,
            "endpoint": str(m.endpoint),
            "dir": str(node_dir(root, m.id)),
            "tls_fingerprint": m.tls_fingerprint,
        }
        for m in manifest.members
    ]
    result = {
        "dir": str(root),
        "manifest": str(root / "manifest.json"),
        "operator": str(root / "operator"),
        "threshold": manifest.threshold,
        "epoch": manifest.epoch,
        "members": members,
        "ledger": ledger,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"committee {t}-of-{n} in {root} (manifest {result['manifest']})")
    for m in members:
        print(f"  member {m['id']}: {m['endpoint']}  {m['dir']}")
    print("development passphrases are in each member's 'passphrase' file (mode 0600)")
    if ledger is not None:
        print(f"replicated ledger: validators in {ledger['dir']}, operator key "
              f"{ledger['operator_key']}")  # fmt: skip
    return 0
