"""The end-to-end demo on the embedded defaults (`synod demo`, `make demo`).

A committee of five nodes with threshold three — one of them silent, one sending
invalid shares — custodies funds on local chain engines: btcd in regtest (Bitcoin),
two in-process EVMs with the Vyper custody contract (Ethereum, BNB Chain), and the
Solana runtime (LiteSVM). Deposits are made on the engines and credited to a SQLite
ledger by the deposit watchers, at the configured depth; a batch of withdrawals is
queued and the withdraw worker drives each one FIFO through reservation, ROAST signing
in the deterministic simulator, broadcast and confirmation. A chain whose engine cannot
run here is reported as such.
"""

from __future__ import annotations

import json
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
from synod.config import ConfigError, SynodConfig, load_config
from synod.crypto import frost
from synod.runtime.consensus import LocalConsensus
from synod.runtime.interfaces import ChainAdapter, Signer
from synod.runtime.journal import Journal
from synod.runtime.watchers.base import BlockSource, DepositWatcher, WatcherLoop
from synod.runtime.worker import WithdrawWorker, WorkerPolicy
from synod.sim.committee_signer import FrostCommitteeSigner
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase
from synod.state.fees import FeeSchedule
from synod.state.machine import BROADCAST, CONFIRMED, Ledger
from synod.state.transactions import WithdrawRequest
from synod.state.watch_store import WatchStore

THRESHOLD, PARTIES = 3, 5
FAULTS = {4: "silent", 5: "invalid-share"}
UNITS = {
    "btc": ("BTC", 10**8),
    "eth": ("ETH", 10**18),
    "bnb": ("BNB", 10**18),
    "sol": ("SOL", 10**9),
}

Progress = Callable[[str], None]


Submit = Callable[[WithdrawRequest], object]
"""How a chain setup queues its withdrawals: through the REST API, or straight to the ledger."""


@dataclass
class ChainSetup:
    chain: str
    adapter: ChainAdapter
    signer: FrostCommitteeSigner
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
    virtual_signing_s: float = 0.0  # simulated network time the signing sessions took
    passes: int = 0

    @property
    def all_confirmed(self) -> bool:
        """Every withdrawal confirmed, and every recipient received exactly its amount."""
        return bool(self.rows) and all(
            r["state"] == CONFIRMED and r["received"] == r["amount_base_units"] for r in self.rows
        )


# ----------------------------------------------------------------------------- chains


def _bitcoin(
    ledger: Ledger, workdir: Path, count: int, progress: Progress, submit: Submit
) -> ChainSetup:
    from synod.chains.bitcoin.adapter import BitcoinAdapter
    from synod.chains.bitcoin.address import Network, p2tr_address, p2tr_script
    from synod.chains.bitcoin.devnode import TAPROOT_ACTIVE_HEIGHT, start_btcd
    from synod.runtime.watchers.bitcoin import BitcoinDeposits

    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, THRESHOLD, PARTIES)
    output_key = public.group_public_key(frost.KEY_PATH)
    address = p2tr_address(output_key, Network.REGTEST)
    progress(f"btc: starting btcd (regtest) mining to the committee's P2TR address {address}")
    node = start_btcd(address, workdir / "btcd")
    node.mine(TAPROOT_ACTIVE_HEIGHT)  # Taproot active; the first coinbases matured
    script = p2tr_script(output_key).hex()  # the matured coinbases paying it are deposits
    deposits = BitcoinDeposits(node.rpc, [script], ours=ledger.has_utxo)
    adapter = BitcoinAdapter(node.rpc, Network.REGTEST)
    signer = FrostCommitteeSigner(
        keys, public, THRESHOLD, adapter.sighashes, frost.KEY_PATH, corrupt=FAULTS
    )
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

    return ChainSetup("btc", adapter, signer, mine_if_broadcast, paid, node.stop, deposits)


def _evm(
    chain: str,
    ledger: Ledger,
    count: int,
    fees: FeeSchedule,
    progress: Progress,
    depth: int,
    submit: Submit,
) -> ChainSetup:
    from synod.chains.evm.adapter import EthTesterBackend
    from synod.chains.evm.custody import build_withdraw_call, selector
    from synod.chains.evm.devchain import (
        ETHER,
        GWEI,
        DevChain,
        deploy_custody,
        relayed_custody_adapter,
    )
    from synod.runtime.watchers.evm import EvmDeposits

    keys, public = frost.local_dkg(frost.Ciphersuite.SECP256K1_TR, THRESHOLD, PARTIES)
    dev = DevChain()
    progress(f"{chain}: in-process EVM (py-evm), deploying the custody contract")
    custody = deploy_custody(dev, public.group_public_key(), fund=0)
    dev.transact(custody, value=50 * ETHER)  # the contract's Deposit event
    dev.tester.mine_blocks(depth)  # deep enough for the watcher to credit it
    native = UNITS[chain][0]
    deposits = EvmDeposits(chain, EthTesterBackend(dev.tester), custody, native, {})
    epoch = int.from_bytes(dev.call(custody, selector("epoch()")), "big")
    gas_price = (fees.eth_gas_price_gwei if chain == "eth" else fees.bnb_gas_price_gwei) * GWEI

    def call_for(w: Any) -> Any:
        return build_withdraw_call(
            json.loads(w.template),
            chain_id=dev.chain_id,
            contract=custody,
            fee_cap=gas_price,
            deadline=2**40,
            epoch=epoch,
        )

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
    signer = FrostCommitteeSigner(keys, public, THRESHOLD, digest, None, corrupt=FAULTS)
    for i in range(count):
        to = checksum_address(os.urandom(20))
        submit(WithdrawRequest(f"{chain}-{i}", chain, native, to, ETHER // 20 * (i + 1)))
    fresh = lambda w: dev.balance(w.to)  # noqa: E731 (a fresh address: its balance is its pay)
    return ChainSetup(chain, adapter, signer, paid=fresh, deposits=deposits)


def _solana(
    ledger: Ledger, count: int, progress: Progress, depth: int, submit: Submit
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

    keys, public = frost.local_dkg(frost.Ciphersuite.ED25519, THRESHOLD, PARTIES)
    group = public.group_public_key()
    progress("sol: in-process Solana runtime (LiteSVM), a transfer to the committee's account")
    svm = LocalCluster()  # LiteSVM keeping the account history the unspendable proof reads
    blocks = LocalBlocks(svm)
    funder, lamports = Keypair(), 500 * 10**9
    svm.airdrop(funder.pubkey(), lamports + 10**9)
    committee = Pubkey.from_bytes(group)
    pay = transfer(
        TransferParams(from_pubkey=funder.pubkey(), to_pubkey=committee, lamports=lamports)
    )
    bh = svm.latest_blockhash()
    blocks.send(Transaction([funder], Message.new_with_blockhash([pay], funder.pubkey(), bh), bh))
    for _ in range(depth):  # deep enough for the watcher to credit it
        blocks.close_block()
    deposits = SolanaDeposits(blocks, str(committee))
    adapter = SolanaAdapter(svm, group, confirmations=1, store={})

    def message(w: Any) -> bytes:
        return adapter.prepare(w).message

    signer = FrostCommitteeSigner(keys, public, THRESHOLD, message, None, corrupt=FAULTS)
    for i in range(count):
        to = str(Keypair().pubkey())
        submit(WithdrawRequest(f"sol-{i}", "sol", "SOL", to, 10**8 * (i + 1)))

    def paid(w: Any) -> int:  # a fresh account: its balance is what it was paid
        return int(svm.get_balance(Pubkey.from_string(w.to)) or 0)

    return ChainSetup(
        "sol", adapter, signer, paid=paid, deposits=deposits, start_height=blocks.first_slot
    )


# ----------------------------------------------------------------------------- the run


def _credit_deposits(
    setups: list[ChainSetup], consensus: LocalConsensus, cfg: Any, progress: Progress
) -> None:
    """Run the deposit watchers (depth from ``chains.<chain>.confirmations``) until a pass
    credits nothing more."""
    store = WatchStore(consensus.ledger.db)
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
ROLES = {4: "silent", 5: "sends invalid shares"}


def _publish_node_view(path: Path, setups: list[ChainSetup]) -> None:
    """What the committee's simulated nodes saw, for the API's keys, committee and culprits."""
    from synod.chains.bitcoin.address import Network, p2tr_address
    from synod.chains.solana.address import solana_address

    keys = []
    for s in setups:
        key = s.signer.public.group_public_key(s.signer.tweak)
        scheme = "ed25519" if s.chain == "sol" else "bip340"
        found = {}
        if s.chain == "btc":
            found["btc"] = p2tr_address(key, Network.REGTEST)
        elif s.chain == "sol":
            found["sol"] = solana_address(key)
        keys.append(GroupKey(scheme, key.hex(), found))
    records = [r for s in setups for r in s.signer.records]
    culprits: dict[str, list[int]] = {}
    for r in records:
        culprits[r.withdraw_id] = sorted({*culprits.get(r.withdraw_id, []), *r.culprits})
    members = [
        Member(
            i,
            f"node {i}" + (f" ({ROLES[i]})" if i in ROLES else ""),
            None,
            sum(i in r.culprits for r in records),
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
) -> DemoReport:
    """The whole pipeline; with `api`, the withdrawals are submitted through the REST API (a
    `synod api run` child process over the same ledger) and the dashboard stays up until
    `api.hold` returns."""
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
        report = _run(workdir, per_chain, progress, chains, submit, cfg)
        if api is not None:
            api.hold(report, dashboard)
        return report


def _run(
    workdir: Path,
    per_chain: int,
    progress: Progress,
    chains: tuple[str, ...],
    submit: Submit | None,
    cfg: SynodConfig,
) -> DemoReport:
    started = time.perf_counter()
    fees = FeeSchedule.from_config(cfg.chains)
    ledger = Ledger.from_config(SqliteDatabase(workdir / "ledger.db"), cfg.chains, cfg.withdraw)
    consensus = LocalConsensus(ledger, Journal(workdir / "journal.db"), AuditLog(ledger.db))
    submit = submit or ledger.apply
    report = DemoReport()
    setups: list[ChainSetup] = []
    try:
        if "btc" in chains:
            try:
                setups.append(_bitcoin(ledger, workdir, per_chain, progress, submit))
            except Exception as err:  # an engine that cannot run here is named, never faked
                report.unavailable["btc"] = f"no local engine: {err}"
        for chain in ("eth", "bnb"):
            if chain in chains:
                depth = cfg.chain(chain).confirmations
                setups.append(_evm(chain, ledger, per_chain, fees, progress, depth, submit))
        if "sol" in chains:
            depth = cfg.chain("sol").confirmations
            setups.append(_solana(ledger, per_chain, progress, depth, submit))
        if "trx" in chains:
            report.unavailable["trx"] = (
                "no local engine: java-tron is a JVM full node with its own network; "
                "TRON transactions are built and signed offline and checked in the tests"
            )
        _credit_deposits(setups, consensus, cfg, progress)
        adapters: dict[str, ChainAdapter] = {s.chain: s.adapter for s in setups}
        signers: dict[str, Signer] = {s.chain: s.signer for s in setups}
        # Local engines: one confirmation is final, and there is no reason to back off.
        policy = replace(
            WorkerPolicy.from_config(cfg), backoff_s=0.0, confirmations=dict.fromkeys(adapters, 1)
        )
        worker = WithdrawWorker(ledger, consensus, signers, adapters, policy)
        total = len(ledger.withdrawals())
        progress(
            f"processing {total} withdrawals FIFO; committee {THRESHOLD}-of-{PARTIES}, "
            f"node 4 silent, node 5 sends invalid shares"
        )
        processing_started = time.perf_counter()
        for report.passes in range(1, 200):
            worker.step()
            for s in setups:
                s.after_pass(ledger)
            done = len(ledger.withdrawals(CONFIRMED))
            progress(f"pass {report.passes}: {done}/{total} confirmed")
            if done == total:
                break
        report.processing_s = time.perf_counter() - processing_started
        report.virtual_signing_s = sum(r.virtual_s for s in setups for r in s.signer.records)
        _publish_node_view(workdir / NODE_VIEW, setups)
        for w in ledger.withdrawals():
            setup = next(s for s in setups if s.chain == w.chain)
            records = [r for r in setup.signer.records if r.withdraw_id == w.withdraw_id]
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
                    "sessions": sum(r.sessions for r in records),
                    "culprits": sorted({c for r in records for c in r.culprits}),
                    "received": setup.paid(w) if setup.paid and w.txid else None,
                    "amount_base_units": w.amount,
                }
            )
    finally:
        for s in setups:
            s.cleanup()
        consensus.journal.close()
        ledger.db.close()
    report.elapsed_s = time.perf_counter() - started
    return report
