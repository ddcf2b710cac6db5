"""The query parameters every paginated list takes: `offset`, and `limit` (default 100, at most 500)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import QueryParameter

Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
