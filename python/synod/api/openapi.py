"""`python -m synod.api.openapi [FILE]`: the API's OpenAPI 3.1 document, as served at
`/openapi.json`, built over a throwaway store (docs/openapi.json is this output)."""

from __future__ import annotations

import json
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from synod.api.app import create_app
from synod.api.auth import TokenStore
from synod.api.webhooks import webhook_router
from synod.runtime.consensus import SoloConsensus
from synod.runtime.journal import Journal
from synod.runtime.webhooks import Webhooks
from synod.state.audit import AuditLog
from synod.state.db import SqliteDatabase
from synod.state.machine import Ledger


def openapi_document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDatabase(Path(tmp) / "openapi.db")
        journal = Journal(Path(tmp) / "journal.db")
        webhooks = Webhooks(db)
        try:
            consensus = SoloConsensus(Ledger(db), journal)
            app = create_app(
                consensus,
                TokenStore(db),
                AuditLog(db),
                extra_routers=[partial(webhook_router, webhooks)],
            )
            return app.openapi()
        finally:
            webhooks.close()
            journal.close()
            db.close()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
