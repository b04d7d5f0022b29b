"""URLs Kiln writes into LoRA responses carry the prefix the request came in on."""

from __future__ import annotations

from starlette.requests import HTTPConnection


def api_base(conn: HTTPConnection) -> str:
    """`<root_path>/api/v1` or `<root_path>/v1`, whichever the request used."""
    root = conn.scope.get("root_path", "") or ""
    path = conn.scope.get("path", "") or ""
    rest = path[len(root) :] if root and path.startswith(root) else path
    return root + ("/api/v1" if rest.startswith("/api/v1") else "/v1")
