"""`synod committee init|ca|assemble`: a development committee on one machine; the committee
CA and the offline assembly of the members' enrolment requests (docs/DEPLOY.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synod.cli.node import passphrase_from
from synod.cli.progress import Progress
from synod.processes import forbid_core_dumps

CA_PASSPHRASE_ENV = "SYNOD_CA_PASSPHRASE"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "committee",
        help="create a development committee",
        description="Committee material: a development CA, one directory per member, the manifest.",
    )
    actions = p.add_subparsers(
        dest="committee_command", required=True, metavar="{init,ca,assemble}"
    )
    ca = actions.add_parser(
        "ca",
        help="create the committee CA (on the offline assembling machine)",
        description="Create DIR/ca.pem and DIR/ca.key.pem (mode 0600, encrypted with the "
        f"passphrase from --passphrase-file or ${CA_PASSPHRASE_ENV}). Keep DIR off the "
        "members' hosts: it issues their certificates.",
    )
    ca.add_argument("--dir", required=True, type=Path, help="where the CA lives")
    ca.add_argument("--passphrase-file", type=Path, help="the CA key's passphrase file")
    ca.set_defaults(run=run_ca)
    asm = actions.add_parser(
        "assemble",
        help="issue the certificates and write the bundle every member installs",
        description="From the members' (and operators') enrolment requests only, which hold "
        "no private key: check each, issue each certificate with the CA, and write OUT: "
        "manifest.json, ca.pem, member-<i>/cert.pem and request.json, "
        "operator-<name>/operator.pem and, with --chain-id, the replicated ledger's committee "
        "file and (when the members made validators) the CometBFT genesis. Copy OUT to every "
        "member's host and run `synod member install` there.",
    )
    asm.add_argument("--ca", required=True, type=Path, help="the CA directory")
    asm.add_argument("--passphrase-file", type=Path, help="the CA key's passphrase file")
    asm.add_argument("-t", "--threshold", type=int, required=True, help="signers needed")
    asm.add_argument("--out", required=True, type=Path, help="the bundle directory to create")
    asm.add_argument("requests", nargs="+", type=Path, help="request.json files")
    asm.add_argument("--chain-id", help="the replicated ledger's chain id")
    asm.add_argument(
        "--ledger-operator",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help="an operator's Ed25519 public key that may submit user requests to the ledger",
    )
    asm.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    asm.set_defaults(run=run_assemble)
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


def run_ca(args: argparse.Namespace) -> int:
    from synod.node.enrol import EnrolmentError, create_ca
    from synod.node.keystore import KeystoreError

    forbid_core_dumps()
    try:
        ca = create_ca(args.dir, passphrase_from(args.passphrase_file, CA_PASSPHRASE_ENV))
    except (EnrolmentError, KeystoreError, OSError) as err:
        print(f"synod committee ca: error: {err}", file=sys.stderr)
        return 2
    from synod.node.pki import fingerprint

    print(f"committee CA in {args.dir}; keep it off the members' hosts")
    print(f"CA fingerprint (tell each member out of band, for `member install "
          f"--ca-fingerprint`): {fingerprint(ca.cert)}")  # fmt: skip
    return 0


def run_assemble(args: argparse.Namespace) -> int:
    from synod.consensus.committee import CommitteeError as LedgerCommitteeError
    from synod.node.enrol import EnrolmentError, assemble, load_ca, read_request
    from synod.node.keystore import KeystoreError

    forbid_core_dumps()  # the CA key passes through this process
    progress = Progress()
    try:
        operators: dict[str, bytes] = {}
        for item in args.ledger_operator:
            name, sep, key = item.partition("=")
            raw = bytes.fromhex(key) if sep and len(key) == 64 else b""
            if not raw or not name.isidentifier():
                raise EnrolmentError(f"--ledger-operator {item!r}: expected NAME=<64 hex digits>")
            operators[name] = raw
        requests = [read_request(path) for path in args.requests]
        ca = load_ca(args.ca, passphrase_from(args.passphrase_file, CA_PASSPHRASE_ENV))
        bundle = assemble(
            requests, args.threshold, ca, args.out, args.chain_id, operators, progress.step
        )
    except (EnrolmentError, KeystoreError, LedgerCommitteeError, ValueError, OSError) as err:
        print(f"synod committee assemble: error: {err}", file=sys.stderr)
        return 2
    manifest = bundle.manifest
    result = {
        "bundle": str(args.out),
        "threshold": manifest.threshold,
        "members": [{"id": m.id, "endpoint": str(m.endpoint)} for m in manifest.members],
        "ledger": bundle.ledger.chain_id if bundle.ledger else None,
        "ca_fingerprint": manifest.ca_fingerprint,
        "genesis": bundle.genesis,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"bundle for {len(manifest.members)} members, threshold {manifest.threshold}: {args.out}")
    print("copy it to every member's host and run `synod member install --ca-fingerprint "
          f"{manifest.ca_fingerprint}` there")  # fmt: skip
    return 0
