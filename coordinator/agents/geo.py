"""Which geo agent of a location runs a check: rendezvous (highest random weight) hashing.

Every (agent, check) pair gets a fixed pseudo-random score; a check goes to the online agent of
its location with the highest score. The choice needs no stored state and every coordinator makes
the same one. It holds while that agent stays online; when the agent goes offline only the checks
it had move (each to its runner-up), and when it comes back exactly those checks return to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def score(agent_id: int, check_id: int) -> int:
    digest = hashlib.sha256(f"{check_id}:{agent_id}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big")


def choose(agent_ids: Iterable[int], check_id: int) -> int | None:
    """The agent that runs `check_id` among `agent_ids` (the location's online geo agents)."""
    # The id breaks a (practically impossible) tie, so that the choice never depends on order.
    return max(agent_ids, key=lambda agent_id: (score(agent_id, check_id), agent_id), default=None)


def checks_of(agent_id: int, online_agent_ids: Iterable[int], check_ids: Iterable[int]) -> list[int]:
    """Those of `check_ids` that fall to `agent_id` among the location's online agents."""
    candidates = set(online_agent_ids)
    if agent_id not in candidates:
        return []
    return [check_id for check_id in check_ids if choose(candidates, check_id) == agent_id]
