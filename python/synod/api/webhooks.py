"""`/v1/webhooks`: webhook subscriptions over the API, with the same tokens, roles, audit trail
and problem+json errors as the rest.

An admin subscribes a URL to event kinds and hears the signing secret once, in the answer to
the `POST`; no read shows it again. A URL whose host is, or resolves to, a loopback, private,
link-local or other non-public address is refused (422 on `body.url`) unless
`webhooks.allowNetworks` covers it. Viewers (and up) list subscriptions and read each one's
deliveries and attempt log. Deliveries themselves are made by the loop `synod api run` starts
beside the server (`synod.runtime.webhooks.Webhooks.run`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from synod.api.app import RouteKit, problem_responses
from synod.api.auth import ApiToken
from synod.api.problems import Problem, ProblemType
from synod.api.views import MAX_PAGE
from synod.runtime.webhooks import Webhooks
from synod.state.webhooks import (
    MAX_URL,
    Attempt,
    Delivery,
    EventKind,
    Subscription,
    SubscriptionError,
)

log = structlog.get_logger("synod.api")

MAX_SUB_ID = 64
MAX_SUBSCRIPTIONS = 100  # active at once: each event is queued once per subscription


class WebhookCreate(BaseModel):
    """A subscription: where to POST, and which event kinds."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=MAX_URL, examples=["https://hooks.example.com/synod"])
    events: list[EventKind] = Field(min_length=1, max_length=len(EventKind))


def subscription_view(sub: Subscription) -> dict[str, Any]:
    """A subscription as every reader sees it: never its secret."""
    return {
        "id": sub.sub_id,
        "url": sub.url,
        "events": [k.value for k in sub.kinds],
        "active": sub.active,
    }


def delivery_view(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.delivery_id,
        "event_id": d.event_id,
        "type": d.kind.value,
        "seq": d.seq,
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": int(d.next_at * 1000),
        "last_error": d.last_error,
        "event": json.loads(d.body),
    }


def attempt_view(a: Attempt) -> dict[str, Any]:
    return {
        "delivery_id": a.delivery_id,
        "event_id": a.event_id,
        "attempt": a.attempt,
        "at": int(a.at * 1000),
        "status_code": a.status_code,
        "error": a.error,
    }


def webhook_router(webhooks: Webhooks, kit: RouteKit) -> APIRouter:
    """The routes over `webhooks` (on the API's own store connection)."""
    router = APIRouter(tags=["webhooks"])

    def known(sub_id: str) -> Subscription:
        sub = webhooks.store.subscription(sub_id[:MAX_SUB_ID])
        if sub is None:
            raise Problem(ProblemType.NOT_FOUND, f"no webhook subscription {sub_id[:MAX_SUB_ID]!r}")
        return sub

    @router.post(
        "/webhooks",
        status_code=201,
        summary="Subscribe a URL to events",
        responses=problem_responses(409, 413, 422),
    )
    async def create_webhook(
        request: Request, body: WebhookCreate, principal: ApiToken = kit.admin
    ) -> dict[str, Any]:
        """Events applied from now on are POSTed to `url`, each signed with the returned
        `secret` (`Synod-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`). The secret is in
        this answer only: store it now."""

        def subscribe() -> Subscription:
            # Counted in the serial write path, so concurrent requests cannot overshoot.
            if len(webhooks.store.subscriptions(active_only=True)) >= MAX_SUBSCRIPTIONS:
                raise Problem(
                    ProblemType.LIMIT_REACHED,
                    f"at most {MAX_SUBSCRIPTIONS} active subscriptions: delete one first",
                )
            # The destination was checked before the batch (a name lookup must not hold up
            # the serial write path); each delivery checks it again.
            sub = webhooks.store.subscribe(body.url, [k.value for k in body.events])
            # The audit row names the subscription, in the same commit as the subscription.
            kit.audit_call(request, principal, 201, {"subscription": sub.sub_id, "url": sub.url})
            return sub

        try:
            await run_in_threadpool(webhooks.check_destination, body.url)
            sub = await kit.batcher.run(subscribe)
        except Problem:
            request.state.audited = False
            raise
        except SubscriptionError as err:
            request.state.audited = False
            raise Problem(ProblemType.VALIDATION, str(err), "body.url") from None
        log.info("webhook subscribed", subscription=sub.sub_id)
        return {**subscription_view(sub), "secret": sub.secret}

    @router.get("/webhooks", summary="Webhook subscriptions (never their secrets)")
    async def list_webhooks(_: ApiToken = kit.viewer) -> dict[str, Any]:
        return {"items": [subscription_view(s) for s in webhooks.list()]}

    @router.delete(
        "/webhooks/{subscription_id}",
        summary="Unsubscribe",
        responses=problem_responses(404),
    )
    async def delete_webhook(subscription_id: str, _: ApiToken = kit.admin) -> dict[str, Any]:
        """Deactivates the subscription: deliveries not yet made are dropped (marked failed,
        `unsubscribed`); its delivery log stays readable. Deleting again answers the same."""
        sub = known(subscription_id)
        await kit.batcher.run(lambda: webhooks.unsubscribe(sub.sub_id))
        log.info("webhook unsubscribed", subscription=sub.sub_id)
        return subscription_view(known(sub.sub_id))

    @router.get(
        "/webhooks/{subscription_id}/deliveries",
        summary="A subscription's deliveries, newest first",
        responses=problem_responses(404, 422),
    )
    async def list_deliveries(
        subscription_id: str,
        _: ApiToken = kit.viewer,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Each event queued for the subscription with its state (`pending`, `delivered`,
        `failed`), attempts so far, next attempt time (Unix ms) and last error."""
        sub = known(subscription_id)
        return {"items": [delivery_view(d) for d in webhooks.deliveries(sub.sub_id, limit)]}

    @router.get(
        "/webhooks/{subscription_id}/attempts",
        summary="A subscription's delivery log, newest first",
        responses=problem_responses(404, 422),
    )
    async def list_attempts(
        subscription_id: str,
        _: ApiToken = kit.viewer,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> dict[str, Any]:
        """Every attempt: time (Unix ms), HTTP status (null when none came back) and error."""
        sub = known(subscription_id)
        return {"items": [attempt_view(a) for a in webhooks.attempts(sub.sub_id, limit)]}

    return router
