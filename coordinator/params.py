"""Parameters many routes share: ids in paths and bodies, and pagination.

Ids are 32-bit integers in the database: a larger number names nothing and must not reach the
driver (PostgreSQL would refuse it with an error), so it is refused at the edge.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter
from msgspec import Meta

MAX_ID = 2**31 - 1

Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
PathId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
Limit = Annotated[int, QueryParameter(ge=1, le=500)]
