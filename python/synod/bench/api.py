"""Withdrawal submissions per second through the REST API (`python -m synod.bench --api`).

A uvicorn server (`synod api run`) runs in a subprocess on a loopback port over a fresh store;
a bounded load generator in this process keeps `concurrency` keep-alive connections busy with
`POST /v1/withdrawals` (each with its own external_id and Idempotency-Key) until it has sent
`requests` of them or `duration` seconds have passed, whichever comes first, then stops. It
reports submissions per second and p50/p99 latency of the accepted ones, and checks that the
ledger holds exactly one withdrawal per accepted submission.

The client is a minimal HTTP/1.1 writer/reader on asyncio streams so that, on a small machine,
it takes as little CPU from the server as possible.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synod.api.auth import Role, TokenStore
from synod.api.embedded import api_process
from synod.chains.bitcoin.address import Network, p2tr_address
from synod.state.db import open_database

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ApiBenchResult:
    backend: str
    sent: int
    accepted: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    concurrency: int
    in_ledger: int | None  # withdrawals the store holds afterwards (None: not a submission run)

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


def _submission(port: int, token: str, destination: str, run: str, i: int) -> tuple[bytes, int]:
    """A withdrawal submission and the status that counts as accepted."""
    body = json.dumps(
        {
            "chain": "btc",
            "asset": "BTC",
            "destination": destination,
            "amount": str(10_000 + i),
            "external_id": f"bench-{run}-{i}",
        }
    ).encode()
    head = (
        f"POST /v1/withdrawals HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nIdempotency-Key: {run}-{i}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body, 201


def _health(port: int) -> tuple[bytes, int]:
    """The cheapest route (no store, no token): the framework's own ceiling here."""
    return f"GET /healthz HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode(), 200


async def _load(
    port: int,
    make: Callable[[int], tuple[bytes, int]],
    requests: int,
    duration: float,
    concurrency: int,
) -> tuple[list[float], int, int, float]:
    """(latencies of accepted requests, sent, errors, elapsed)."""
    latencies: list[float] = []
    counter = iter(range(requests))
    errors = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for i in counter:
                if time.perf_counter() >= deadline:
                    return
                request, accepted = make(i)
                t0 = time.perf_counter()
                writer.write(request)
                await writer.drain()
                status = await _read_response(reader)
                sent += 1
                if status == accepted:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, sent, errors, time.perf_counter() - start


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return sorted_values[index]


def run_api_bench(
    db_url: str,
    backend: str,
    requests: int,
    duration: float,
    concurrency: int,
    progress: Callable[[str], None],
    baseline: bool = False,
) -> list[ApiBenchResult]:
    """Submissions on the store at `db_url`; with `baseline`, first the same load on
    `GET /healthz` against the same server."""
    results: list[ApiBenchResult] = []
    db = open_database(db_url)
    token, _ = TokenStore(db).create(Role.OPERATOR, "bench")
    db.close()
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--rate", "1000000", "--burst", "1000000", "--journal", f"{tmp}/journal.db"]
        with api_process(db_url, args=args) as url:
            port = int(url.rsplit(":", 1)[1])
            if baseline:
                progress(f"{backend}: GET /healthz baseline, {concurrency} connections")
                health = asyncio.run(
                    _load(port, lambda i: _health(port), requests, duration, concurrency)
                )
                results.append(_result(f"{backend} GET /healthz", concurrency, *health, None))
            progress(f"{backend}: {requests} submissions, {concurrency} connections, ≤{duration}s")
            destination = p2tr_address(bytes(range(1, 33)), Network.MAINNET)
            run = uuid.uuid4().hex[:8]
            submitted = asyncio.run(
                _load(
                    port,
                    lambda i: _submission(port, token, destination, run, i),
                    requests,
                    duration,
                    concurrency,
                )
            )
    db = open_database(db_url)
    in_ledger = int(db.query("SELECT count(*) FROM withdrawals")[0][0])
    db.close()
    results.append(_result(f"{backend} POST /v1/withdrawals", concurrency, *submitted, in_ledger))
    return results


def _result(
    label: str,
    concurrency: int,
    latencies: list[float],
    sent: int,
    errors: int,
    elapsed: float,
    in_ledger: int | None,
) -> ApiBenchResult:
    latencies.sort()
    return ApiBenchResult(
        label,
        sent,
        len(latencies),
        errors,
        elapsed,
        _percentile(latencies, 0.5) * 1000,
        _percentile(latencies, 0.99) * 1000,
        concurrency,
        in_ledger,
    )


def api_table(
    requests: int,
    duration: float,
    concurrency: int,
    postgres_dsn: str | None,
    progress: Callable[[str], None],
) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        results = run_api_bench(
            str(Path(tmp) / "bench.db"),
            "sqlite",
            requests,
            duration,
            concurrency,
            progress,
            baseline=True,
        )
    if postgres_dsn:
        results += _postgres(postgres_dsn, requests, duration, concurrency, progress)
    else:
        progress("PostgreSQL skipped (set SYNOD_BENCH_POSTGRES_DSN or --postgres-dsn)")
    head = "| store, route | sent | accepted | errors | seconds | per second | p50 | p99 | conns |"
    lines = [head, "|" + "---|" * 9]
    for r in results:
        if r.in_ledger is not None and r.in_ledger != r.accepted:
            raise RuntimeError(f"{r.backend}: {r.accepted} accepted, {r.in_ledger} in the ledger")
        lines.append(
            f"| {r.backend} | {r.sent} | {r.accepted} | {r.errors} | {r.seconds:.2f} | "
            f"{r.per_second:.0f} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | {r.concurrency} |"
        )
    return "\n".join(lines)


def _postgres(
    dsn: str, requests: int, duration: float, concurrency: int, progress: Callable[[str], None]
) -> list[ApiBenchResult]:
    import psycopg

    name = f"synod_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return run_api_bench(
            f"{dsn} dbname={name}", "postgres", requests, duration, concurrency, progress
        )
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
