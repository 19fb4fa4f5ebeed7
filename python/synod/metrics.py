"""The Prometheus metrics of synod, defined once: the API serves them on `/metrics`, and the
runtime updates the signing ones (`NodeSigner`) in the process it runs in. A member process's
own drops and links come from `synod.node.metrics`.

Everything is registered on `REGISTRY`, not the client library's global default, so importing
this module twice in tests or embedding synod in another program never collides.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

LEDGER_TRANSACTIONS = Counter(
    "synod_ledger_transactions_applied",
    "Ledger transactions applied through consensus, by kind.",
    ["kind"],
    registry=REGISTRY,
)
API_REQUESTS = Histogram(
    "synod_api_request_seconds",
    "API request latency, by method, route and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
API_RATE_LIMITED = Counter(
    "synod_api_rate_limited",
    "API calls refused by a token's rate limit.",
    registry=REGISTRY,
)
API_CLIENT_RATE_LIMITED = Counter(
    "synod_api_client_rate_limited",
    "API calls without a valid token refused by their client address's rate limit.",
    registry=REGISTRY,
)
SIGNING_SECONDS = Histogram(
    "synod_signing_seconds",
    "Time from the start of a signing session to the aggregated signature, by scheme.",
    ["scheme"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
SUB_SESSIONS = Histogram(
    "synod_signing_sub_sessions",
    "ROAST sub-sessions started per signature.",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34),
    registry=REGISTRY,
)
CULPRITS = Counter(
    "synod_culprits",
    "Committee members named as culprits, by member.",
    ["member"],
    registry=REGISTRY,
)
WEBHOOK_ATTEMPTS = Counter(
    "synod_webhook_attempts",
    "Webhook delivery attempts, by outcome: delivered, failed (status, timeout, connection), "
    "refused (the destination is not allowed), key (the secret does not open).",
    ["outcome"],
    registry=REGISTRY,
)
