"""The end-to-end demo on the embedded defaults (`synod demo`, `make demo`).

A committee of five member processes with threshold three custodies funds on local
chain engines: btcd in regtest (Bitcoin), two in-process EVMs with the Vyper custody
contract (Ethereum, BNB Chain), and the Solana runtime (LiteSVM). Each member is a
`synod node run` process with its own encrypted keystore, linked to the others by
gRPC over mutual TLS; all five run the DKG of each chain's key, then member 4 is
stopped and member 5 runs with the test-only fault that makes it send invalid
signature shares. Deposits are made on the engines and credited to a SQLite ledger by
the deposit watchers, at the configured depth; a batch of withdrawals is queued and
the withdraw worker drives each one FIFO through reservation, ROAST signing by the
member processes (`NodeSigner`; every member checks the message against the
withdrawal's recorded template in its own view of the ledger before it produces a
nonce), broadcast and confirmation. A chain whose engine cannot run here is reported
as such.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import coincurve

from synod.api.auth import Role, TokenStore
from synod.api.client import ApiClient
from synod.api.embedded import api_process
from synod.api.providers import GroupKey, Member, write_node_view
from synod.chains.evm.address import checksum_address
from synod.chains.localnode import binary_dir, free_base_port
from synod.chains.signing_view import evm_call
from synod.chains.signing_view import write as write_signing_view
from synod.config import ConfigError, SynodConfig, load_config
from synod.demo.ledgers import DemoLedger, LocalLedger, ReplicatedLedger
from synod.node.ceremony import GroupKey as CommitteeKey
from synod.node.ceremony import run_dkg
from synod.node.committee import init_committee
from synod.node.control import ControlClient, operator_clients
from synod.node.local_cluster import member_dirs, start_members, stop_members, wait_linked
from synod.processes import die_with_parent
from synod.runtime.consensus import WriteBack
from synod.runtime.interfaces import ChainAdapter, Signer
from synod.runtime.node_signer import MessagesFor, NodeSigner
from synod.runtime.watchers.base import BlockSource, DepositWatcher, WatcherLoop
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import BROADCAST, CONFIRMED, Ledger
from synod.state.transactions import WithdrawRequest
from synod.state.watch_store import WatchStore

THRESHOLD, PARTIES = 3, 5
STOPPED, LYING = 4, 5  # member 4 is stopped after the key ceremonies; 5 sends invalid shares
SIGNING_VIEW = "chains.json"
UNITS = {
    "btc": ("BTC", 10**8),
    "eth": ("ETH", 10**18),
    "bnb": ("BNB", 10**18),
    "sol": ("SOL", 10**9),
}

Progress = Callable[[str], None]
DEADLINE_S = 600.0  # the worker's passes end here even if a withdrawal is still open
POLL_S = 0.05


Submit = Callable[[WithdrawRequest], object]
"""How a chain setup queues its withdrawals: through the REST API, or straight to the ledger."""


@dataclass
class ChainSetup:
    chain: str
    adapter: ChainAdapter
    signer: NodeSigner
    key: CommitteeKey
    view: dict[str, Any]  # the chain's entry in the members' signing view
    after_pass: Callable[[Ledger], None] = lambda ledger: None
    paid: Callable[[Any], int] | None = None  # what the engine shows the recipient received
    cleanup: Callable[[], None] = lambda: None
    deposits: BlockSource | None = None  # where the chain's watcher finds the deposits
    start_height: int = 0


@dataclass
class DemoReport:
    rows: list[dict[str, Any]] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    processing_s: float = 0.0  # from the first worker pass to the last confirmation
    signing_s: float = 0.0  # wall time the signing sessions took, summed
    replicas: str | None = None  # the replicated ledger: what every replica agrees on
    passes: int = 0

    @property
    def all_confirmed(self) -> bool:
        """Every withdrawal confirmed, and every recipient received exactly its amount."""
        return bool(self.rows) and all(
            r["state"] == CONFIRMED and r["received"] == r["amount_base_units"] for r in self.rows
        )


# ----------------------------------------------------------------------------- committee


@dataclass
class Committee:
    """The demo's committee: one `synod node run` process per member on loopback, each
    with its own keystore and the demo's ledger as its view of the ledger."""

    root: Path
    clients: dict[int, ControlClient]
    timeouts: Any

    def dkg(self, chain: str, scheme: str, progress: Progress) -> CommitteeKey:
        key = run_dkg(self.clients, f"{chain}-key", scheme, THRESHOLD, 120.0)
        progress(f"{chain}: {scheme} DKG among the five members; each keeps its own share")
        return key

    def signer(self, key: CommitteeKey, messages_for: MessagesFor) -> NodeSigner:
        return NodeSigner(
            self.clients,
            key.key_id,
            key.scheme,
            key.verifying_key,
            messages_for,
            rotate_timeout=self.timeouts.aggregator_turn_s(PARTIES, THRESHOLD),
            timeout=self.timeouts.session_limit_s(PARTIES, THRESHOLD),
        )


def start_committee(
    root: Path,
    views: Callable[[int], Path],
    workdir: Path,
    stack: ExitStack,
    progress: Progress,
    cfg: SynodConfig,
) -> Committee:
    """Start all five members of the development committee in `root` (member 5 with its
    test-only fault), each reading `views(member)` as its ledger, and wait until they are
    linked."""
    members = member_dirs(root)
    extra = {
        m: ["--ledger", str(views(m)), "--chains", str(workdir / SIGNING_VIEW)]
        + (["--test-fault", "invalid-shares"] if m == LYING else [])
        for m, _ in members
    }
    stack.callback(stop_members, members, 30.0)
    started = start_members(members, 120.0, extra)
    if started.failed:
        raise RuntimeError(f"member processes did not start: {started.failed} (see {root})")
    wait_linked(members, 120.0)
    progress(f"committee {THRESHOLD}-of-{PARTIES}: five member processes linked over mutual TLS")
    clients = operator_clients(root, timeout=5.0)
    for client in clients.values():
        stack.callback(client.close)
    return Committee(root, clients, cfg.timeouts)


# ----------------------------------------------------------------------------- chains


def _bitcoin(
    ledger: Ledger,
    workdir: Path,
    count: int,
    progress: Progress,
    submit: Submit,
    committee: Committee,
) -> ChainSetup:
    from synod.chains.bitcoin.adapter import BitcoinAdapter
    from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
    from synod.chains.bitcoin.devnode import TAPROOT_ACTIVE_HEIGHT, start_btcd
    from synod.runtime.watchers.bitcoin import BitcoinDeposits

    key = committee.dkg("btc", "bip340", progress)
    output_key = key.verifying_key
    address = p2tr_address(output_key, Network.REGTEST)
    progress(f"btc: starting btcd (regtest) mining to the committee's P2TR address {address}")
    node = start_btcd(address, workdir / "btcd")
    node.mine(TAPROOT_ACTIVE_HEIGHT)  # Taproot active; the first coinbases matured
    script = p2tr_script(output_key).hex()  # the matured coinbases paying it are deposits
    deposits = BitcoinDeposits(node.rpc, [script], ours=ledger.has_utxo)
    adapter = BitcoinAdapter(node.rpc, Network.REGTEST)
    signer = committee.signer(key, adapter.sighashes)
    for i in range(count):
        recipient = p2tr_address(coincurve.PrivateKey().public_key.format()[1:], Network.REGTEST)
        submit(WithdrawRequest(f"btc-{i}", "btc", "BTC", recipient, 10_000_000 * (i + 1)))

    def mine_if_broadcast(ledger: Ledger) -> None:
        if ledger.withdrawals(BROADCAST, "btc"):
            node.mine(1)

    def paid(w: Any) -> int:
        tx = node.rpc.get_raw_transaction(w.txid)
        return sum(
            round(out["value"] * 10**8)
            for out in tx["vout"]
            if w.to in out["scriptPubKey"].get("addresses", [out["scriptPubKey"].get("address")])
        )

    view = {"network": "regtest"}
    return ChainSetup(
        "btc", adapter, signer, key, view, mine_if_broadcast, paid, node.stop, deposits
    )


def _evm(
    chain: str,
    ledger: Ledger,
    count: int,
    fees: FeeSchedule,
    progress: Progress,
    depth: int,
    submit: Submit,
    committee: Committee,
) -> ChainSetup:
    from synod.chains.evm.adapter import EthTesterBackend
    from synod.chains.evm.custody import selector
    from synod.chains.evm.devchain import (
        ETHER,
        GWEI,
        DevChain,
        deploy_custody,
        relayed_custody_adapter,
    )
    from synod.runtime.watchers.evm import EvmDeposits

    key = committee.dkg(chain, "bip340", progress)
    dev = DevChain()
    progress(f"{chain}: in-process EVM (py-evm), deploying the custody contract")
    custody = deploy_custody(dev, key.verifying_key, fund=0)
    dev.transact(custody, value=50 * ETHER)  # the contract's Deposit event
    dev.tester.mine_blocks(depth)  # deep enough for the watcher to credit it
    native = UNITS[chain][0]
    deposits = EvmDeposits(chain, EthTesterBackend(dev.tester), custody, native, {})
    epoch = int.from_bytes(dev.call(custody, selector("epoch()")), "big")
    gas_price = (fees.eth_gas_price_gwei if chain == "eth" else fees.bnb_gas_price_gwei) * GWEI

    # The members' signing view of this chain; the worker derives its calls from it too.
    view = {
        "chain_id": dev.chain_id,
        "contract": custody,
        "fee_cap": gas_price,
        "deadline": 2**40,
        "epoch": epoch,
    }
    call_for = evm_call(chain, view)

    def digest(w: Any) -> bytes:
        return bytes(call_for(w).digest())

    adapter = relayed_custody_adapter(
        chain,
        EthTesterBackend(dev.tester),
        dev.chain_id,
        dev.tester.get_nonce,
        custody,
        gas_price,
        call_for,
    )
    signer = committee.signer(key, digest)
    for i in range(count):
        to = checksum_address(os.urandom(20))
        submit(WithdrawRequest(f"{chain}-{i}", chain, native, to, ETHER // 20 * (i + 1)))
    fresh = lambda w: dev.balance(w.to)  # noqa: E731 (a fresh address: its balance is its pay)
    return ChainSetup(chain, adapter, signer, key, view, paid=fresh, deposits=deposits)


def _solana(
    ledger: Ledger,
    count: int,
    progress: Progress,
    depth: int,
    submit: Submit,
    committee: Committee,
) -> ChainSetup:
    from solders.keypair import Keypair
    from solders.message import Message
    from solders.pubkey import Pubkey
    from solders.system_program import TransferParams, transfer
    from solders.transaction import Transaction

    from synod.chains.solana.adapter import SolanaAdapter
    from synod.chains.solana.blocks import LocalBlocks
    from synod.chains.solana.cluster import LocalCluster
    from synod.runtime.watchers.solana import SolanaDeposits

    key = committee.dkg("sol", "ed25519", progress)
    group = key.public_key
    progress("sol: in-process Solana runtime (LiteSVM), a transfer to the committee's account")
    svm = LocalCluster()  # LiteSVM keeping the account history the unspendable proof reads
    blocks = LocalBlocks(svm)
    funder, lamports = Keypair(), 500 * 10**9
    svm.airdrop(funder.pubkey(), lamports + 10**9)
    account = Pubkey.from_bytes(group)
    pay = transfer(
        TransferParams(from_pubkey=funder.pubkey(), to_pubkey=account, lamports=lamports)
    )
    bh = svm.latest_blockhash()
    blocks.send(Transaction([funder], Message.new_with_blockhash([pay], funder.pubkey(), bh), bh))
    for _ in range(depth):  # deep enough for the watcher to credit it
        blocks.close_block()
    deposits = SolanaDeposits(blocks, str(account))
    adapter = SolanaAdapter(svm, group, confirmations=1, store={})

    def message(w: Any) -> bytes:
        return adapter.prepare(w).message

    signer = committee.signer(key, message)
    for i in range(count):
        to = str(Keypair().pubkey())
        submit(WithdrawRequest(f"sol-{i}", "sol", "SOL", to, 10**8 * (i + 1)))

    def paid(w: Any) -> int:  # a fresh account: its balance is what it was paid
        return int(svm.get_balance(Pubkey.from_string(w.to)) or 0)

    return ChainSetup(
        "sol",
        adapter,
        signer,
        key,
        {"group_key": group.hex()},
        paid=paid,
        deposits=deposits,
        start_height=blocks.first_slot,
    )


# ----------------------------------------------------------------------------- the run


def _credit_deposits(
    setups: list[ChainSetup],
    consensus: WriteBack,
    store: WatchStore,
    cfg: Any,
    progress: Progress,
) -> None:
    """Run the deposit watchers (depth from ``chains.<chain>.confirmations``) until a pass
    credits nothing more."""
    watchers = [
        DepositWatcher.from_config(s.deposits, consensus, store, cfg, s.start_height)
        for s in setups
        if s.deposits is not None
    ]
    loop = WatcherLoop.from_config(watchers, cfg)
    while loop.run_once():
        pass
    for w in watchers:
        progress(f"{w.name}: {w.stats.credited} deposit(s) credited by the watcher")


CHAINS = ("btc", "eth", "bnb", "sol", "trx")


@dataclass(frozen=True)
class DemoApi:
    """Serve the REST API over the demo's ledger and submit the withdrawals through it.

    `hold` is called with the report and the dashboard URL once every withdrawal is done,
    while the API still runs (the CLI prints there, and waits with --keep-running)."""

    port: int = 0  # 0: any free loopback port
    hold: Callable[[DemoReport, str], None] = lambda report, dashboard: None


NODE_VIEW = "node-view.json"
ROLES = {STOPPED: "stopped after the DKGs", LYING: "test fault: sends invalid shares"}


def _publish_node_view(path: Path, setups: list[ChainSetup]) -> None:
    """What the committee's members reported, for the API's keys, committee and culprits."""
    from synod.chains.bitcoin.address import Network, p2tr_address
    from synod.chains.solana.address import solana_address

    keys = []
    for s in setups:
        key = s.key.verifying_key
        found = {}
        if s.chain == "btc":
            found["btc"] = p2tr_address(key, Network.REGTEST)
        elif s.chain == "sol":
            found["sol"] = solana_address(key)
        keys.append(GroupKey(s.key.scheme, key.hex(), found))
    finished = [f for s in setups for f in s.signer.finished]
    culprits: dict[str, list[int]] = {}
    for f in finished:
        culprits[f.withdraw_id] = sorted({*culprits.get(f.withdraw_id, []), *f.culprits})
    members = [
        Member(
            i,
            f"node {i}" + (f" ({ROLES[i]})" if i in ROLES else ""),
            None,
            sum(i in f.culprits for f in finished),
        )
        for i in range(1, PARTIES + 1)
    ]
    write_node_view(path, keys, THRESHOLD, members, culprits, {})


def _api_submitter(client: ApiClient) -> Submit:
    def submit(tx: WithdrawRequest) -> object:
        return client.create_withdrawal(
            tx.chain, tx.asset, tx.to, str(tx.amount), tx.request_id, tx.request_id
        )

    return submit


def run_demo(
    workdir: Path,
    per_chain: int = 2,
    progress: Progress = lambda _: None,
    chains: tuple[str, ...] = CHAINS,
    api: DemoApi | None = None,
    replicated: bool = False,
) -> DemoReport:
    """The whole pipeline; with `api`, the withdrawals are submitted through the REST API (a
    `synod api run` child process over the same ledger) and the dashboard stays up until
    `api.hold` returns. `replicated`: on the replicated ledger (`synod.demo.ledgers`),
    with CometBFT from ``$SYNOD_COMETBFT_DIR`` or built by ``scripts/cometbft.sh``; the API
    serves one local ledger only, so not with `api`."""
    if replicated and api is not None:
        raise ValueError("the demo's REST API runs over the local ledger, not a replica")
    cfg = load_config()  # a configuration the demo cannot run ends here, before anything starts
    eoa = sorted(cfg.chains.nonce_chains & set(chains))
    if eoa:
        raise ConfigError(
            f"chains.{eoa[0]}.custody: the demo pays EVM withdrawals from the custody "
            'contract; set it to "contract" (EOA mode is not part of the demo)'
        )
    with ExitStack() as stack:
        submit: Submit | None = None
        dashboard = ""
        if api is not None:
            db = SqliteDatabase(workdir / "ledger.db")
            token, _ = TokenStore(db).create(Role.ADMIN, "demo")
            db.close()
            url = stack.enter_context(
                api_process(
                    str(workdir / "ledger.db"),
                    api.port or None,
                    ["--btc-network", "regtest", "--node-view", str(workdir / NODE_VIEW)],
                    log=workdir / "api.log",
                )
            )
            client = ApiClient(url, token)
            stack.callback(client.close)
            submit = _api_submitter(client)
            dashboard = f"{url}/dashboard#token={token}"
            progress(f"REST API at {url} (docs {url}/docs); withdrawals are submitted through it")
        cometbft = None
        if replicated:
            progress("replicated ledger: CometBFT (built on first use, about two minutes)")
            cometbft = binary_dir("SYNOD_COMETBFT_DIR", "cometbft.sh", "cometbft") / "cometbft"
        report = _run(workdir, per_chain, progress, chains, submit, cfg, cometbft)
        if api is not None:
            api.hold(report, dashboard)
        return report


def _cleanup(setups: list[ChainSetup]) -> None:
    for s in setups:
        s.cleanup()


def _run(
    workdir: Path,
    per_chain: int,
    progress: Progress,
    chains: tuple[str, ...],
    submit: Submit | None,
    cfg: SynodConfig,
    cometbft: Path | None = None,
) -> DemoReport:
    started = time.perf_counter()
    fees = FeeSchedule.from_config(cfg.chains)
    report = DemoReport()
    setups: list[ChainSetup] = []
    with ExitStack() as stack:
        root = workdir / "committee"
        init_committee(root, THRESHOLD, PARTIES, free_base_port(PARTIES))
        backend: DemoLedger
        if cometbft is None:
            backend = LocalLedger(workdir, cfg, stack)
        else:
            backend = ReplicatedLedger(workdir, root, cometbft, stack, progress, die_with_parent)
        ledger, consensus = backend.ledger, backend.consensus
        inner = submit or backend.submit
        submitted: dict[str, float] = {}  # request id -> when it was submitted

        def submit(tx: WithdrawRequest) -> object:
            submitted[tx.request_id] = time.perf_counter()
            return inner(tx)

        stack.callback(_cleanup, setups)
        committee = start_committee(root, backend.member_view, workdir, stack, progress, cfg)
        if "btc" in chains:
            try:
                setups.append(_bitcoin(ledger, workdir, per_chain, progress, submit, committee))
            except Exception as err:  # an engine that cannot run here is named, never faked
                report.unavailable["btc"] = f"no local engine: {err}"
        for chain in ("eth", "bnb"):
            if chain in chains:
                depth = cfg.chain(chain).confirmations
                setups.append(
                    _evm(chain, ledger, per_chain, fees, progress, depth, submit, committee)
                )
        if "sol" in chains:
            depth = cfg.chain("sol").confirmations
            setups.append(_solana(ledger, per_chain, progress, depth, submit, committee))
        if "trx" in chains:
            report.unavailable["trx"] = (
                "no local engine: java-tron is a JVM full node with its own network; "
                "TRON transactions are built and signed offline and checked in the tests"
            )
        # What each member needs, beyond its ledger view, to derive the signed messages.
        write_signing_view(workdir / SIGNING_VIEW, {s.chain: s.view for s in setups})
        stop_members([(STOPPED, committee.root / f"node-{STOPPED}")], 30.0)
        backend.stop_member(STOPPED)
        progress(f"member {STOPPED} stopped: the committee signs without it")
        for witness in backend.witnesses:  # the other reports the quorum needs, first
            _credit_deposits(
                setups, witness.consensus, WatchStore(witness.watch_db), cfg, lambda _: None
            )
        _credit_deposits(setups, consensus, WatchStore(backend.watch_db), cfg, progress)
        adapters: dict[str, ChainAdapter] = {s.chain: s.adapter for s in setups}
        signers: dict[str, Signer] = {s.chain: s.signer for s in setups}
        # Local engines: one confirmation is final, and there is no reason to back off.
        policy = replace(
            WorkerPolicy.from_config(cfg), backoff_s=0.0, confirmations=dict.fromkeys(adapters, 1)
        )
        worker = WithdrawWorker(ledger, consensus, signers, adapters, policy)
        total = per_chain * len(setups)
        backend.settle(total)
        progress(
            f"processing {total} withdrawals FIFO; committee {THRESHOLD}-of-{PARTIES}, "
            f"member {STOPPED} stopped, member {LYING} sends invalid shares"
        )
        processing_started = time.perf_counter()
        confirmed_at: dict[str, float] = {}
        deadline = processing_started + DEADLINE_S
        done = 0
        while done < total and time.perf_counter() < deadline:
            report.passes += 1
            acted = backend.step(worker, adapters)
            for s in setups:
                s.after_pass(ledger)
            confirmed = ledger.withdrawals(CONFIRMED)
            for w in confirmed:
                confirmed_at.setdefault(w.request_id, time.perf_counter())
            now_done = len(confirmed)
            if now_done != done:
                progress(f"{now_done}/{total} confirmed")
            done = now_done
            if not acted:
                time.sleep(POLL_S)  # the members are signing
        report.processing_s = time.perf_counter() - processing_started
        report.replicas = backend.agreement()
        finished = [f for s in setups for f in s.signer.finished]
        report.signing_s = sum(f.seconds for f in finished)
        _publish_node_view(workdir / NODE_VIEW, setups)
        for w in ledger.withdrawals():
            setup = next(s for s in setups if s.chain == w.chain)
            mine = [f for f in setup.signer.finished if f.withdraw_id == w.withdraw_id]
            status = setup.adapter.status(w) if w.txid else None
            unit, scale = UNITS[w.chain]
            report.rows.append(
                {
                    "chain": w.chain,
                    "amount": f"{w.amount / scale:g} {unit}",
                    "to": w.to,
                    "state": w.status,
                    "txid": w.txid,
                    "confirmations": status.confirmations if status else 0,
                    "sessions": sum(f.sub_sessions for f in mine),
                    "culprits": sorted({c for f in mine for c in f.culprits}),
                    "received": setup.paid(w) if setup.paid and w.txid else None,
                    "amount_base_units": w.amount,
                    # from its submission, or from when the worker started if that was later
                    # (the demo queues every request while it sets the chains up)
                    "latency_s": confirmed_at[w.request_id]
                    - max(submitted.get(w.request_id, 0.0), processing_started)
                    if w.request_id in confirmed_at
                    else None,
                }
            )
    report.elapsed_s = time.perf_counter() - started
    return report
