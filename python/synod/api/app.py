"""The FastAPI application: `create_app` wires the ledger, consensus, tokens, audit trail and
node view into the `/v1` routes, `/metrics`, `/healthz`, `/readyz` and the docs pages;
`metrics_registry` is what `/metrics` serves, also for a listener of its own.

Handlers are `async` and call the store directly: they run one at a time on the event loop,
which is what the single database connection of each store needs, and a submission commits its
ledger transaction, its audit row and its idempotency record in one database transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synod.api.auth import ApiToken, RateLimiter, Role, TokenStore, client_key
from synod.api.batcher import CommitBatcher
from synod.api.problems import PROBLEM_JSON, Problem, ProblemType
from synod.api.providers import LedgerNodeView, NodeView
from synod.api.validation import check_amount, check_asset, check_chain, check_destination
from synod.api.views import (
    MAX_PAGE,
    WithdrawalFilter,
    balances_view,
    decode_cursor,
    deposits_page,
    encode_cursor,
    held_assets,
    withdrawal_view,
    withdrawals_page,
)
from synod.chains.bitcoin.address import Network
from synod.metrics import API_CLIENT_RATE_LIMITED, API_RATE_LIMITED, API_REQUESTS, REGISTRY
from synod.runtime.consensus import WriteBack
from synod.state import errors as E
from synod.state.audit import AuditAction, AuditLog
from synod.state.machine import CANCELLED, STATUSES, withdraw_id_for
from synod.state.transactions import Cancel, WithdrawRequest

log = structlog.get_logger("synod.api")

MAX_IDEMPOTENCY_KEY = 255
MAX_WAIT_S = 30.0  # the longest a submission may wait for its block (`?wait=`)
WAIT_POLL_S = 0.1
PROBES = frozenset({"/healthz", "/readyz"})  # never rate-limited: orchestrators poll them


@dataclass(frozen=True)
class ApiSettings:
    """`rate_per_second` and `burst` bound each token; `client_rate_per_second` and
    `client_burst` bound the requests without a valid token from one client address (at most
    `max_clients` addresses tracked, the least recently seen forgotten first)."""

    btc_network: Network = Network.MAINNET
    rate_per_second: float = 50.0
    burst: int = 100
    max_body_bytes: int = 16_384
    client_rate_per_second: float = 5.0
    client_burst: int = 50
    max_clients: int = 10_000


# --------------------------------------------------------------------------- request models
class WithdrawalCreate(BaseModel):
    """A withdrawal to submit. `amount` is a decimal string of base units (satoshis, wei, sun,
    lamports or token units); `external_id` is the caller's unique id for it."""

    model_config = ConfigDict(extra="forbid")
    chain: str = Field(max_length=8, examples=["btc"])
    asset: str = Field(max_length=32, examples=["BTC"])
    destination: str = Field(max_length=128, examples=["bc1p..."])
    amount: str = Field(max_length=100, examples=["150000"])
    external_id: str = Field(min_length=1, max_length=200, examples=["exchange-payout-8812"])


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="cancelled by operator", min_length=1, max_length=500)


class ProblemModel(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for problem+json answers with these statuses."""
    return {
        s: {"model": ProblemModel, "content": {PROBLEM_JSON: {}}, "description": "problem"}
        for s in statuses
    }


class _WithdrawalsCollector(Collector):
    """`synod_withdrawals{state,chain}` from the ledger at scrape time."""

    def __init__(self, consensus: WriteBack) -> None:
        self.consensus = consensus

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "synod_withdrawals",
            "Withdrawals in the ledger, by state and chain.",
            labels=["state", "chain"],
        )
        rows = self.consensus.ledger.db.query(
            "SELECT status, chain, count(*) FROM withdrawals GROUP BY status, chain"
        )
        for status, chain, count in rows:
            family.add_metric([status, chain], float(count))
        yield family


def metrics_registry(consensus: WriteBack) -> CollectorRegistry:
    """The process's metrics (`synod.metrics.REGISTRY`) and `synod_withdrawals` from the
    ledger, read at scrape time: collect it on the event loop that serves the API, since the
    store has one connection."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(REGISTRY)
    registry.register(_WithdrawalsCollector(consensus))
    return registry


class _Observe:
    """Pure ASGI middleware around the app, delegating to the `observe` closure."""

    def __init__(
        self,
        app: ASGIApp,
        observe: Callable[[Scope, Receive, Send, ASGIApp], Awaitable[None]],
    ) -> None:
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.observe(scope, receive, send, self.app)


def _ms(text: str | None, field: str) -> int | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(ProblemType.VALIDATION, "not an RFC 3339 time", field) from None
    if when.tzinfo is None:
        raise Problem(ProblemType.VALIDATION, "the time needs a UTC offset (or Z)", field)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class RouteKit:
    """What a router mounted beside the built-in ones shares with them: the role dependencies
    (authentication, rate limit, role check, audit row), the group-commit write path, and the
    audit row written inside a write's own commit."""

    viewer: Any
    operator: Any
    admin: Any
    batcher: CommitBatcher
    audit_call: Callable[[Request, ApiToken, int, dict[str, Any] | None], None]


RouterFactory = Callable[[RouteKit], APIRouter]


def _body_hash(body: BaseModel) -> str:
    return hashlib.sha256(
        json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def create_app(
    consensus: WriteBack,
    tokens: TokenStore,
    audit: AuditLog,
    node: NodeView | None = None,
    settings: ApiSettings | None = None,
    extra_routers: Sequence[RouterFactory] = (),
    clock: Callable[[], float] = time.time,
    limiter_clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The API over `consensus.ledger`'s store.

    `extra_routers` build routers (given the shared `RouteKit`) mounted under `/v1` beside the
    built-in routes: the slot where webhook subscription endpoints (and other services sharing
    the auth model) plug in.
    """
    settings = settings or ApiSettings()
    ledger = consensus.ledger  # the solo ledger, or a member's replica (read only)
    db = tokens.db  # the API's own store: the solo ledger's, or one beside the replica
    nodes: NodeView = node or LedgerNodeView(ledger)
    limiter = RateLimiter(settings.rate_per_second, settings.burst, clock=limiter_clock)
    clients = RateLimiter(
        settings.client_rate_per_second,
        settings.client_burst,
        max_keys=settings.max_clients,
        clock=limiter_clock,
    )
    batcher = CommitBatcher(db)
    bearer = HTTPBearer(auto_error=False, description="An API token: `Bearer synod_…`")
    scrape = metrics_registry(consensus)

    app = FastAPI(
        title="synod",
        version="1",
        summary="Threshold-signing custody engine: withdrawals, deposits, balances, committee.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )

    # ------------------------------------------------------------------ errors
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ()))
        return Problem(ProblemType.VALIDATION, str(first.get("msg")), field or None).response(
            request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = ProblemType.NOT_FOUND if exc.status_code == 404 else ProblemType.HTTP
        body = Problem(kind, str(exc.detail)).body(request.url.path)
        body["status"] = exc.status_code
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON)

    # ------------------------------------------------------------------ middleware
    async def observe(scope: Scope, receive: Receive, send: Send, inner: ASGIApp) -> None:
        """Who calls and the limit on callers without a token, body size bound, latency metric,
        and the audit row of every authenticated call (written before the response starts, so
        no call is answered unrecorded)."""
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        start = time.perf_counter()
        request = Request(scope)
        throttled = admit(request)
        if throttled is not None:
            await throttled(scope, receive, send)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            refusal = None
            if length is None or not (length.isascii() and length.isdigit()):
                if request.headers.get("transfer-encoding"):
                    refusal = "send a Content-Length"
            elif int(length) > settings.max_body_bytes:
                refusal = f"at most {settings.max_body_bytes} bytes"
            if refusal:
                response = Problem(ProblemType.BODY_TOO_LARGE, refusal).response(scope["path"])
                await response(scope, receive, send)
                return
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if scope["path"].startswith("/v1/"):  # which block the reads reflect
                    message = {**message, "headers": [*message.get("headers", []), height()]}
                state = scope.get("state", {})
                principal: ApiToken | None = state.get("principal")
                if principal is not None and not state.get("audited"):
                    await batcher.run(lambda: _audit_call(request, principal, status))
            await send(message)

        try:
            await inner(scope, receive, send_observed)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            API_REQUESTS.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )

    def height() -> tuple[bytes, bytes]:
        """The last block of the ledger the API reads (0 before the first)."""
        try:
            rows = ledger.db.query("SELECT MAX(height) FROM block_hashes")
        except Exception:  # a store without the chain's tables: no block yet
            rows = []
        return b"synod-ledger-height", str(rows[0][0] if rows and rows[0][0] else 0).encode()

    def admit(request: Request) -> Response | None:
        """Authenticate the bearer token once, for the role checks (`request.state.token`).
        A request without a live token (none, a malformed, unknown or revoked one) spends a
        token of its client address's bucket, probes excepted; over it, a 429 answers before
        anything else is done."""
        if request.url.path in PROBES:
            return None
        scheme, presented = get_authorization_scheme_param(request.headers.get("authorization"))
        principal = None
        if scheme.lower() == "bearer" and presented:
            principal = tokens.authenticate(presented)
        request.state.token = principal
        if principal is not None:
            return None
        wait = clients.allow(client_key(request.client.host if request.client else None))
        if not wait:
            return None
        API_CLIENT_RATE_LIMITED.inc()
        return Problem(
            ProblemType.RATE_LIMITED,
            f"more than {settings.client_rate_per_second:g}/s without a valid token "
            "from this address",
            headers={"Retry-After": str(math.ceil(wait))},
        ).response(request.url.path)

    def _audit_call(
        request: Request,
        principal: ApiToken,
        status: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        query = request.url.query
        detail: dict[str, Any] = {
            **(extra or {}),  # what a route adds never replaces the fields every row has
            "method": request.method,
            "path": request.url.path + (f"?{query[:200]}" if query else ""),
            "status": status,
            "client": request.client.host if request.client else None,
            "role": principal.role.value,
        }
        audit.append(f"token:{principal.token_id}", AuditAction.API_CALL, detail)
        request.state.audited = True

    # ------------------------------------------------------------------ auth
    def require(role: Role) -> Callable[..., Awaitable[ApiToken]]:
        async def dependency(
            request: Request,
            credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
        ) -> ApiToken:
            principal: ApiToken | None = getattr(request.state, "token", None)  # `admit`
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise Problem(
                    ProblemType.UNAUTHENTICATED,
                    "send 'Authorization: Bearer <token>'",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if principal is None:
                raise Problem(
                    ProblemType.UNAUTHENTICATED,
                    "unknown or revoked token",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            request.state.principal = principal
            wait = limiter.allow(principal.token_id)
            if wait:
                API_RATE_LIMITED.inc()
                raise Problem(
                    ProblemType.RATE_LIMITED,
                    f"rate limit of {settings.rate_per_second:g}/s reached",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
            if not principal.role.allows(role):
                raise Problem(
                    ProblemType.FORBIDDEN,
                    f"needs role {role.value}, the token has {principal.role.value}",
                )
            structlog.contextvars.bind_contextvars(token_id=principal.token_id)
            return principal

        return dependency

    viewer = Depends(require(Role.VIEWER))
    operator = Depends(require(Role.OPERATOR))
    admin = Depends(require(Role.ADMIN))
    v1 = APIRouter(prefix="/v1", responses=problem_responses(401, 403, 429))

    # ------------------------------------------------------------------ withdrawals
    @v1.post(
        "/withdrawals",
        status_code=201,
        tags=["withdrawals"],
        responses=problem_responses(409, 413, 422),
        summary="Submit a withdrawal",
    )
    async def create_withdrawal(
        request: Request,
        body: WithdrawalCreate,
        principal: ApiToken = operator,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=MAX_IDEMPOTENCY_KEY)
        ] = None,
        wait: Annotated[
            float,
            Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for the ledger's block"),
        ] = 0.0,
    ) -> Response:
        """Queues a withdrawal as a `WithdrawRequest` ledger transaction: 201 with the
        withdrawal once the ledger applied it, 202 with its id while it waits for a block (on
        the replicated ledger; `?wait=` seconds, at most 30, waits for the block). Retrying
        with the same `Idempotency-Key` and body returns the original response; the same key
        with another body is a 409, and so is an `external_id` used before (through any
        member's API: the ledger refuses a second request with the same `external_id`)."""
        digest = _body_hash(body)
        replay = _replay(principal, idempotency_key, digest)
        if replay is not None:
            return replay
        chain = check_chain(body.chain)
        asset = check_asset(chain, body.asset, held_assets(ledger, chain))
        amount = check_amount(chain, body.amount)
        destination = check_destination(chain, body.destination, settings.btc_network)
        tx = WithdrawRequest(
            body.external_id, chain, asset, destination, amount, int(clock() * 1000)
        )
        wid = withdraw_id_for(body.external_id)

        def submit() -> Response:
            # Authoritative here, in the serial write path: a concurrent twin may have won.
            again = _replay(principal, idempotency_key, digest)
            if again is not None:
                return again
            receipt = consensus.submit(tx)
            if receipt is None:  # for a later block (a replica), or journaled while paused
                status = 202
                payload: dict[str, Any] = {
                    "id": wid,
                    "external_id": body.external_id,
                    "chain": chain,
                    "asset": asset,
                    "destination": destination,
                    "amount": str(amount),
                    "state": "PENDING",
                }
            else:
                status = 201
                payload = withdrawal_view(ledger.withdrawal(wid), ledger, nodes)
            if idempotency_key is not None:
                db.execute(
                    "INSERT INTO api_idempotency (token_id, idem_key, body_hash, status, "
                    "response, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        principal.token_id,
                        idempotency_key,
                        digest,
                        status,
                        json.dumps(payload),
                        int(clock() * 1000),
                    ),
                )
            _audit_call(request, principal, status)  # in the same commit as the request
            return JSONResponse(
                payload, status_code=status, headers={"Location": f"/v1/withdrawals/{wid}"}
            )

        try:
            response = await batcher.run(submit)
        except E.DuplicateRequest:
            request.state.audited = False
            raise Problem(
                ProblemType.DUPLICATE_EXTERNAL_ID,
                f"external_id {body.external_id!r} was already used",
                "body.external_id",
                withdrawal_id=wid,
            ) from None
        except E.Rejected as err:
            request.state.audited = False
            raise Problem(ProblemType.REJECTED, str(err)) from None
        if response.status_code < 300:
            log.info("withdrawal submitted", withdraw_id=wid, chain=chain, asset=asset)
        if response.status_code == 202 and wait > 0:
            applied = await _applied(wid, time.monotonic() + wait)
            if applied is not None:
                return JSONResponse(
                    applied, status_code=201, headers={"Location": f"/v1/withdrawals/{wid}"}
                )
        return response

    async def _applied(wid: str, deadline: float) -> dict[str, Any] | None:
        """The withdrawal once the ledger holds it, or None at `deadline`."""
        while True:
            try:
                return withdrawal_view(ledger.withdrawal(wid), ledger, nodes)
            except E.UnknownWithdrawal:
                if time.monotonic() >= deadline:
                    return None
            await asyncio.sleep(WAIT_POLL_S)

    def _replay(principal: ApiToken, key: str | None, digest: str) -> Response | None:
        """The stored response of an earlier request with this Idempotency-Key, if any."""
        if key is None:
            return None
        stored = db.query(
            "SELECT body_hash, status, response FROM api_idempotency "
            "WHERE token_id = ? AND idem_key = ?",
            (principal.token_id, key),
        )
        if not stored:
            return None
        if stored[0][0] != digest:
            raise Problem(
                ProblemType.IDEMPOTENCY_MISMATCH,
                "this Idempotency-Key was used with a different body",
                "header.Idempotency-Key",
            )
        return JSONResponse(
            json.loads(stored[0][2]),
            status_code=int(stored[0][1]),
            headers={"Idempotent-Replayed": "true"},
        )

    @v1.get(
        "/withdrawals",
        tags=["withdrawals"],
        summary="List withdrawals",
        responses=problem_responses(422),
    )
    async def list_withdrawals(
        _: ApiToken = viewer,
        state: Annotated[str | None, Query(description=f"one of {', '.join(STATUSES)}")] = None,
        chain: str | None = None,
        asset: Annotated[str | None, Query(max_length=32)] = None,
        external_id: Annotated[str | None, Query(max_length=200)] = None,
        created_after: Annotated[str | None, Query(description="RFC 3339, inclusive")] = None,
        created_before: Annotated[str | None, Query(description="RFC 3339, exclusive")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[
            str | None, Query(description="`next_cursor` of the previous page")
        ] = None,
        order: Annotated[
            Literal["asc", "desc"], Query(description="asc: oldest first (FIFO); desc: newest")
        ] = "asc",
    ) -> dict[str, Any]:
        """In request (FIFO) order, or newest first; `next_cursor` is null on the last page."""
        if state is not None and state not in STATUSES:
            raise Problem(
                ProblemType.VALIDATION, f"state must be one of {', '.join(STATUSES)}", "query.state"
            )
        if chain is not None:
            try:
                check_chain(chain)
            except Problem as err:
                err.field = "query.chain"
                raise
        f = WithdrawalFilter(
            state,
            chain,
            asset,
            external_id,
            _ms(created_after, "query.created_after"),
            _ms(created_before, "query.created_before"),
        )
        page, last = withdrawals_page(ledger, f, decode_cursor(cursor), limit, order == "desc")
        return {
            "items": [withdrawal_view(w, ledger, nodes) for w in page],
            "next_cursor": None if last is None else encode_cursor(last),
        }

    @v1.get(
        "/withdrawals/{withdrawal_id}",
        tags=["withdrawals"],
        responses=problem_responses(404),
        summary="One withdrawal",
    )
    async def get_withdrawal(withdrawal_id: str, _: ApiToken = viewer) -> dict[str, Any]:
        """With its state history, template hash, txid, confirmations, signing sessions and
        culprits."""
        try:
            w = ledger.withdrawal(withdrawal_id[:64])
        except E.UnknownWithdrawal:
            raise Problem(ProblemType.NOT_FOUND, f"no withdrawal {withdrawal_id[:64]!r}") from None
        return withdrawal_view(w, ledger, nodes)

    @v1.post(
        "/withdrawals/{withdrawal_id}/cancel",
        tags=["withdrawals"],
        responses=problem_responses(404, 409),
        summary="Cancel a queued withdrawal",
    )
    async def cancel_withdrawal(
        withdrawal_id: str, body: CancelRequest | None = None, _: ApiToken = operator
    ) -> dict[str, Any]:
        """Only while it is QUEUED and no funds or template were ever reserved for it (then
        nothing can have been signed); later a 409 says why not. Cancelling a cancelled
        withdrawal again returns it as it is (safe to retry)."""
        try:
            w = ledger.withdrawal(withdrawal_id[:64])
        except E.UnknownWithdrawal:
            raise Problem(ProblemType.NOT_FOUND, f"no withdrawal {withdrawal_id[:64]!r}") from None
        if w.status == CANCELLED:  # a retried cancel: the outcome the first one had
            return withdrawal_view(w, ledger, nodes)
        reason = body.reason if body else CancelRequest().reason
        try:
            await batcher.run(lambda: consensus.submit(Cancel(w.withdraw_id, reason, w.attempt)))
        except E.InvalidTransition as err:
            raise Problem(ProblemType.INVALID_TRANSITION, err.message, state=w.status) from None
        except E.Rejected as err:
            raise Problem(ProblemType.REJECTED, str(err)) from None
        log.info("withdrawal cancelled", withdraw_id=w.withdraw_id)
        return withdrawal_view(ledger.withdrawal(w.withdraw_id), ledger, nodes)

    # ------------------------------------------------------------------ other reads
    @v1.get(
        "/deposits", tags=["funds"], summary="Credited deposits", responses=problem_responses(422)
    )
    async def list_deposits(
        _: ApiToken = viewer,
        chain: str | None = None,
        asset: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Every `DepositCredit` the ledger applied, oldest first."""
        items, last = deposits_page(ledger, chain, asset, decode_cursor(cursor), limit)
        return {"items": items, "next_cursor": None if last is None else encode_cursor(last)}

    @v1.get("/balances", tags=["funds"], summary="Balances per chain and asset")
    async def get_balances(_: ApiToken = viewer) -> dict[str, Any]:
        """deposited = available + reserved + withdrawn + fees + external, per chain and asset
        (`conserved` says it holds)."""
        return {"items": balances_view(ledger)}

    @v1.get("/keys", tags=["committee"], summary="Group keys and addresses")
    async def get_keys(_: ApiToken = viewer) -> dict[str, Any]:
        return {
            "items": [
                {
                    "scheme": k.scheme,
                    "public_key": k.public_key,
                    "addresses": dict(k.addresses),
                    "epoch": k.epoch,
                }
                for k in nodes.public_keys()
            ]
        }

    @v1.get("/committee", tags=["committee"], summary="Committee members")
    async def get_committee(_: ApiToken = viewer) -> dict[str, Any]:
        c = nodes.committee()
        return {
            "threshold": c.get("threshold"),
            "epoch": c.get("epoch"),
            "members": [
                {
                    "member_id": m.member_id,
                    "name": m.name,
                    "last_seen": m.last_seen,
                    "culprit_count": m.culprit_count,
                }
                for m in c.get("members", [])
            ],
        }

    @v1.get("/transitions", tags=["committee"], summary="Power transitions and strikes")
    async def get_transitions(_: ApiToken = viewer) -> dict[str, Any]:
        """Every transition (state, members, threshold, migration transactions, switch window,
        culprits), the strikes per member and the active epoch."""
        return ledger.transitions.report()

    @v1.get("/sessions", tags=["committee"], summary="Recent signing sessions")
    async def get_sessions(
        _: ApiToken = viewer, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
    ) -> dict[str, Any]:
        return {"items": nodes.sessions(limit)}

    @v1.get("/audit", tags=["audit"], summary="The newest audit rows")
    async def get_audit(
        _: ApiToken = admin, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
    ) -> dict[str, Any]:
        return {"items": [r.as_dict() for r in audit.tail(limit)]}

    app.include_router(v1)
    app.add_middleware(_Observe, observe=observe)
    kit = RouteKit(viewer, operator, admin, batcher, _audit_call)
    for factory in extra_routers:  # webhook subscriptions plug in here, under /v1
        app.include_router(factory(kit), prefix="/v1", responses=problem_responses(401, 403, 429))

    # ------------------------------------------------------------------ operations
    # ------------------------------------------------------------------ dashboard
    static = resources.files("synod.api").joinpath("static")
    pages = {
        name: (static.joinpath(name).read_bytes(), kind)
        for name, kind in (
            ("dashboard.html", "text/html; charset=utf-8"),
            ("dashboard.js", "text/javascript; charset=utf-8"),
            ("dashboard.css", "text/css; charset=utf-8"),
        )
    }
    page_headers = {
        "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        """A page that reads only through this API, with the token the user gives it."""
        content, kind = pages["dashboard.html"]
        return Response(content, media_type=kind, headers=page_headers)

    @app.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        if name not in ("dashboard.js", "dashboard.css"):
            raise Problem(ProblemType.NOT_FOUND, f"no dashboard file {name[:64]!r}")
        content, kind = pages[name]
        return Response(content, media_type=kind, headers=page_headers)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The store answers",
        responses=problem_responses(503),
    )
    async def readyz() -> Response:
        try:
            db.query("SELECT 1")
        except Exception as err:  # any store failure means not ready
            body = Problem(ProblemType.REJECTED, f"store unavailable: {type(err).__name__}").body()
            body.update(status=503, title="Not ready")
            return JSONResponse(body, status_code=503, media_type=PROBLEM_JSON)
        return JSONResponse(
            {
                "status": "ready",
                "consensus_paused": consensus.paused,
                "journal": len(consensus.journal),
            }
        )

    @app.get(
        "/metrics",
        tags=["operations"],
        response_class=PlainTextResponse,
        summary="Prometheus metrics",
        responses=problem_responses(401, 403, 429),
    )
    async def metrics(_: ApiToken = viewer) -> Response:
        """Withdrawal counts, API and signing latencies, culprits: for a viewer token. `synod
        api run` also serves them without a token on a loopback listener of its own
        (`--metrics-listen`), for a local Prometheus."""
        return Response(generate_latest(scrape), media_type=CONTENT_TYPE_LATEST)

    return app
