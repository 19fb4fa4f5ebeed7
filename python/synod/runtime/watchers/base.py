"""What every deposit watcher shares: the cursor, the depth rule, reorg handling, crediting.

A chain family supplies a `BlockSource`: the height of the last *closed* block and, per
height, the block's hash, its parent's hash and the deposits to the committee in it. The
watcher processes blocks in height order and only once they are ``confirmations`` deep, so a
reorganisation shallower than that depth never touches a block it has processed: the new
branch is simply what it finds when it gets there. Each processed block's hash is remembered
(`WatchStore`); before going on, the watcher checks that the next block's parent is the block
it processed last. If not, the chain reorganised deeper than the configured depth: the
watcher walks back to the fork, logs it as an incident and rescans from there (credits from
the orphaned blocks cannot be taken back by a watcher; that needs an operator).

Every deposit is credited with a `DepositCredit` whose fields, hence transaction id, follow
from the deposit alone (chain, asset, amount, reference = txid and output/log/instruction
index, height), submitted through consensus. The ledger returns the original receipt for the
same transaction and refuses another credit of the same reference (`DuplicateDeposit`), so a
restart between crediting and moving the cursor, or a rescan, never credits twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from synod.config import SynodConfig
from synod.runtime.consensus import WriteBack
from synod.state.errors import DuplicateDeposit, Rejected
from synod.state.transactions import DepositCredit
from synod.state.watch_store import WatchStore

log = logging.getLogger("synod.runtime.watchers")

MAX_BLOCKS_PER_PASS = 500  # bounded work per pass; the next pass goes on
KEEP_HASHES = 1000  # block hashes remembered per watcher, to find a fork point


@dataclass(frozen=True)
class Deposit:
    chain: str
    asset: str
    amount: int
    ref: str  # txid:vout (Bitcoin), txhash:log's index in its tx (EVM), signature:instruction
    height: int
    script: str = ""  # Bitcoin: the output's scriptPubKey (hex)
    min_depth: int = 0  # e.g. a coinbase output: spendable only at maturity

    def credit(self) -> DepositCredit:
        return DepositCredit(
            self.chain, self.asset, self.amount, self.ref, self.height, self.script
        )


@dataclass(frozen=True)
class Block:
    height: int
    hash: str
    parent: str
    deposits: tuple[Deposit, ...] = ()


class BlockSource(Protocol):
    chain: str

    def tip(self) -> int:
        """Height of the last closed block (no transaction can join it any more)."""
        ...

    def block(self, height: int) -> Block:
        """The block at `height` on the node's current best chain, with its deposits."""
        ...

    def block_hash(self, height: int) -> str | None:
        """The hash at `height` on the current best chain (None above the tip)."""
        ...


@dataclass
class WatcherStats:
    credited: int = 0
    already_credited: int = 0
    refused: int = 0
    blocks: int = 0
    deep_reorgs: int = 0
    refusals: list[str] = field(default_factory=list)


class DepositWatcher:
    """Credits deposits of one chain at depth, exactly once (see the module docstring)."""

    def __init__(
        self,
        source: BlockSource,
        consensus: WriteBack,
        store: WatchStore,
        confirmations: int,
        start_height: int = 0,
        name: str | None = None,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.source = source
        self.consensus = consensus
        self.store = store
        self.confirmations = confirmations
        self.start_height = start_height
        self.name = name or source.chain
        self.stats = WatcherStats()

    @classmethod
    def from_config(
        cls,
        source: BlockSource,
        consensus: WriteBack,
        store: WatchStore,
        cfg: SynodConfig,
        start_height: int = 0,
    ) -> DepositWatcher:
        """A watcher crediting at ``chains.<chain>.confirmations``."""
        confirmations = cfg.chain(source.chain).confirmations
        return cls(source, consensus, store, confirmations, start_height)

    def step(self, max_blocks: int = MAX_BLOCKS_PER_PASS) -> int:
        """Process the blocks now deep enough (at most `max_blocks`); the number credited."""
        tip = self.source.tip()
        cursor = self.store.cursor(self.name)
        credited = 0
        for _ in range(max_blocks):
            height = cursor.height + 1 if cursor else self.start_height
            if height > tip - self.confirmations + 1:
                break  # not deep enough yet (nothing to read)
            block = self.source.block(height)
            if cursor is not None and block.parent != cursor.hash:
                self._deep_reorg()
                break  # rescan from the fork point on the next pass
            need = max([self.confirmations, *(d.min_depth for d in block.deposits)])
            if tip - height + 1 < need:
                break  # a deposit that must be deeper (a coinbase) holds the cursor here
            for deposit in block.deposits:
                credited += self._credit(deposit)
            self.store.advance(self.name, height, block.hash, KEEP_HASHES)
            self.stats.blocks += 1
            cursor = self.store.cursor(self.name)
        return credited

    def _credit(self, deposit: Deposit) -> int:
        try:
            receipt = self.consensus.submit(deposit.credit())
        except DuplicateDeposit:  # the same output seen again (restart, rescan, reorg)
            self.stats.already_credited += 1
            return 0
        except Rejected as err:  # a deposit the ledger cannot take (e.g. unknown asset)
            log.error("%s: deposit %s refused by the ledger: %s", self.name, deposit.ref, err)
            self.stats.refused += 1
            self.stats.refusals = [*self.stats.refusals[-99:], f"{deposit.ref}: {err}"]
            return 0
        if receipt is not None and receipt.duplicate:
            self.stats.already_credited += 1
            return 0
        log.info(
            "%s: credited %s %s (%s) at height %d",
            self.name,
            deposit.amount,
            deposit.asset,
            deposit.ref,
            deposit.height,
        )
        self.stats.credited += 1
        return 1

    def _deep_reorg(self) -> None:
        """The chain changed below a processed block: rewind to the fork point."""
        fork = self.start_height - 1
        for seen in self.store.recorded(self.name):
            if self.source.block_hash(seen.height) == seen.hash:
                fork = seen.height
                break
        self.stats.deep_reorgs += 1
        log.error(
            "%s: reorganisation deeper than %d confirmations (fork at height %d): rescanning; "
            "credits from orphaned blocks need an operator's review",
            self.name,
            self.confirmations,
            fork,
        )
        self.store.rewind(self.name, fork)


REPEAT_LOG_S = 30.0  # the same failure of one watcher is logged again after this long


class WatcherLoop:
    """Runs every watcher each pass, then sleeps the poll interval (woken early by `wake`);
    `from_config` takes ``runtime.pollIntervalMs``. A watcher that fails is logged with its
    traceback once; while it keeps failing the same way, one line every `REPEAT_LOG_S` says
    how many passes failed (a chain node down for an hour is not 14,400 tracebacks), and its
    recovery is logged. `failures` counts the passes failed per watcher."""

    @classmethod
    def from_config(cls, watchers: Sequence[DepositWatcher], cfg: SynodConfig) -> WatcherLoop:
        return cls(watchers, cfg.runtime.poll_interval_s)

    def __init__(
        self,
        watchers: Sequence[DepositWatcher],
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watchers = list(watchers)
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self.failures: dict[str, int] = {}
        self._failing: dict[str, tuple[str, float, int]] = {}  # name -> (what, logged, since)
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> int:
        self._wake.clear()
        credited = 0
        for watcher in self.watchers:
            try:
                credited += watcher.step()
            except Exception as err:  # one chain's node down must not stop the others
                self._failed(watcher.name, err)
            else:
                if self._failing.pop(watcher.name, None) is not None:
                    log.info("%s: watcher passes succeed again", watcher.name)
        return credited

    def _failed(self, name: str, err: Exception) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1
        what, now = f"{type(err).__name__}: {err}", self.clock()
        last = self._failing.get(name)
        if last is None or last[0] != what:
            log.exception("%s: watcher pass failed; retrying next pass", name)
            self._failing[name] = (what, now, 0)
        elif now - last[1] >= REPEAT_LOG_S:
            repeats = last[2] + 1
            log.warning("%s: still failing (%d more passes): %s", name, repeats, what)
            self._failing[name] = (what, now, 0)
        else:
            self._failing[name] = (what, last[1], last[2] + 1)

    def run(self, stop: threading.Event, max_passes: int | None = None) -> None:
        passes = 0
        while not stop.is_set():
            self.run_once()
            passes += 1
            if max_passes is not None and passes >= max_passes:
                return
            self._wake.wait(self.poll_interval_s)
