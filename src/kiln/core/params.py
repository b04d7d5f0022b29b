"""Bounded query parameters shared by every surface.

An unbounded `int` query parameter lets `?offset=9223372036854775808` reach the database, which
cannot hold it (a 500 from the driver). These types bound every integer a client sends, so the
refusal is an ordinary request-validation error in the surface's own shape:

    async def list_things(offset: Offset = 0, limit: Annotated[int, query_int(1, 500)] = 50): ...

`QUERY_INT_MAX` (2**31 - 1) is larger than any row count or page a client may need and small
enough that `page * page_size` and `offset + limit` never overflow a 64-bit column.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

QUERY_INT_MAX = 2**31 - 1


def query_int(ge: int = 0, le: int = QUERY_INT_MAX, **kwargs: Any) -> Any:
    """`Query(ge=..., le=...)` with both bounds always set (use inside `Annotated[int, ...]`)."""
    return Query(ge=ge, le=min(le, QUERY_INT_MAX), **kwargs)


Offset = Annotated[int, query_int(0, description="Items to skip.")]
Page = Annotated[int, query_int(1, description="Page number, from 1.")]
BoundedInt = Annotated[int, query_int(-QUERY_INT_MAX)]
