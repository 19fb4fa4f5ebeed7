"""Settings for every test: hypothesis keeps its database of failing examples in the user's
cache, outside the checkout, and prints a failing example's reproduction blob."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase


def _cache_root() -> Path:
    explicit = os.environ.get("SYNOD_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "synod"


settings.register_profile(
    "synod",
    database=DirectoryBasedExampleDatabase(_cache_root() / "hypothesis"),
    print_blob=True,
)
settings.load_profile("synod")
