"""Which model version answers a tail request: the routing hook the bandit plugs into.

A router has one required method, `choose(versions) -> version`, called once per tail instance
with the loaded versions (the champion first, then the challengers). Optional: `shares() ->
{version: share}`, the router's own current split, exported to /metrics as the bandit's shares
(without it the service exports the split it observed).

`ml/serving/bandit.py` (ThompsonBandit) provides the learning router. Until it exists, or while
there is no challenger, every tail request goes to the champion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

log = logging.getLogger(__name__)


class Router(Protocol):
    def choose(self, versions: Sequence[str]) -> str: ...


class ChampionOnly:
    """Everything to the champion (the first version)."""

    def choose(self, versions: Sequence[str]) -> str:
        return versions[0]

    def shares(self) -> dict:
        return {}


def make_router(options: dict | None = None) -> Router:
    """ThompsonBandit(**options) when `ml.serving.bandit` provides it, else ChampionOnly."""
    try:
        from ml.serving.bandit import ThompsonBandit
    except ImportError:
        return ChampionOnly()
    log.info("tail routing: ThompsonBandit(%s)", options or {})
    return ThompsonBandit(**(options or {}))
