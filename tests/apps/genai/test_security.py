"""Every genai route tried anonymously and with each role, from the §2.3 map: below the route's
role → 401 (anonymous) / 403 (`insufficient_role`), at or above → neither. The table must cover
every genai route the app serves (a new route without a row fails here). Object routes with
another user's object answer 404: see test_modelops, test_registry, test_credentials."""

from __future__ import annotations

from tests.apps.genai.helpers import role_headers

P, U, A, S = "public", "user", "admin", "superadmin"
RANK = {P: -1, U: 0, A: 1, S: 2}
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/auth/login"): P,
    ("POST", "/auth/register"): P,
    ("POST", "/auth/logout"): U,
    ("GET", "/auth/me"): U,
    ("GET", "/v1/auth/me"): U,
    ("GET", "/auth/users"): A,
    ("POST", "/auth/users/{user_id}/activate"): A,
    ("POST", "/auth/users/{user_id}/deactivate"): A,
    ("PATCH", "/auth/users/{user_id}/role"): S,
    ("GET", "/health"): P,
    ("GET", "/system/health"): P,
    ("GET", "/v1/system/ping"): P,
    ("GET", "/voice/health"): P,
    ("POST", "/voice/wake-events"): P,
    ("GET", "/v1/content/quote-of-the-day"): P,
    ("GET", "/v1/runtime/profile"): U,
    ("PUT", "/v1/runtime/profile"): S,
    ("GET", "/v1/platform/capabilities"): U,
    ("GET", "/v1/platform/activation-audit"): S,
    ("GET", "/v1/platform/provider-families"): S,
    ("GET", "/v1/platform/providers"): S,
    ("POST", "/v1/platform/providers"): S,
    ("PUT", "/v1/platform/providers/{provider_id}"): S,
    ("DELETE", "/v1/platform/providers/{provider_id}"): S,
    ("POST", "/v1/platform/providers/{provider_id}/validate"): S,
    ("POST", "/v1/platform/providers/{provider_id}/loaded-model"): S,
    ("DELETE", "/v1/platform/providers/{provider_id}/loaded-model"): S,
    ("GET", "/v1/platform/deployments"): S,
    ("POST", "/v1/platform/deployments"): S,
    ("GET", "/v1/platform/deployments/{deployment_id}"): S,
    ("PATCH", "/v1/platform/deployments/{deployment_id}"): S,
    ("PUT", "/v1/platform/deployments/{deployment_id}"): S,
    ("DELETE", "/v1/platform/deployments/{deployment_id}"): S,
    ("POST", "/v1/platform/deployments/{deployment_id}/activate"): S,
    ("POST", "/v1/platform/deployments/{deployment_id}/clone"): S,
    ("PUT", "/v1/platform/deployments/{deployment_id}/bindings/{capability}"): S,
    ("GET", "/v1/modelops/models"): U,
    ("POST", "/v1/modelops/models"): U,
    ("GET", "/v1/modelops/models/{model_id}"): U,
    ("DELETE", "/v1/modelops/models/{model_id}"): U,
    ("POST", "/v1/modelops/models/{model_id}/register"): U,
    ("POST", "/v1/modelops/models/{model_id}/activate"): U,
    ("POST", "/v1/modelops/models/{model_id}/deactivate"): U,
    ("POST", "/v1/modelops/models/{model_id}/unregister"): U,
    ("PATCH", "/v1/modelops/models/{model_id}/credential"): U,
    ("GET", "/v1/modelops/models/{model_id}/usage"): U,
    ("GET", "/v1/modelops/models/{model_id}/validations"): U,
    ("POST", "/v1/modelops/models/{model_id}/validate"): A,
    ("POST", "/v1/modelops/models/{model_id}/test"): A,
    ("GET", "/v1/modelops/models/{model_id}/tests"): A,
    ("GET", "/v1/modelops/models/{model_id}/test-runtimes"): S,
    ("GET", "/v1/modelops/credentials"): U,
    ("POST", "/v1/modelops/credentials"): U,
    ("DELETE", "/v1/modelops/credentials/{credential_id}"): U,
    ("POST", "/v1/modelops/credentials/{credential_id}/revoke"): U,
    ("GET", "/v1/modelops/sharing"): A,
    ("PUT", "/v1/modelops/sharing"): A,
    ("GET", "/v1/modelops/catalog"): S,
    ("POST", "/v1/modelops/catalog"): S,
    ("GET", "/v1/modelops/discovery/huggingface"): S,
    ("GET", "/v1/modelops/local-artifacts"): S,
    ("GET", "/v1/modelops/discovery/cloud"): U,
    ("GET", "/v1/modelops/discovery/huggingface/{source_id}"): S,
    ("GET", "/v1/modelops/downloads"): S,
    ("POST", "/v1/modelops/downloads"): S,
    ("GET", "/v1/modelops/downloads/{download_id}"): S,
    ("POST", "/v1/modelops/downloads/{download_id}/cancel"): S,
    ("POST", "/v1/models/inference"): U,
    ("POST", "/v1/models/generate"): U,
    ("GET", "/v1/registry/{entity_type}"): U,
    ("POST", "/v1/registry/{entity_type}"): U,
    ("GET", "/v1/registry/{entity_type}/{entity_id}"): U,
    ("POST", "/v1/registry/{entity_type}/{entity_id}/versions"): U,
    ("POST", "/v1/registry/{entity_type}/{entity_id}/share"): U,
    ("GET", "/v1/registry/{entity_type}/{entity_id}/shares"): U,
    ("GET", "/v1/catalog/agents"): S,
    ("POST", "/v1/catalog/agents"): S,
    ("GET", "/v1/catalog/agents/{item_id}"): S,
    ("PUT", "/v1/catalog/agents/{item_id}"): S,
    ("POST", "/v1/catalog/agents/{item_id}/validate"): S,
    ("DELETE", "/v1/catalog/agents/{agent_id}"): U,
    ("GET", "/v1/catalog/tools"): S,
    ("POST", "/v1/catalog/tools"): S,
    ("GET", "/v1/catalog/tools/{item_id}"): S,
    ("PUT", "/v1/catalog/tools/{item_id}"): S,
    ("POST", "/v1/catalog/tools/{item_id}/validate"): S,
    ("GET", "/v1/policy/rules"): S,
    ("POST", "/v1/policy/rules"): S,
    ("GET", "/v1/quotes"): A,
    ("POST", "/v1/quotes"): A,
    ("GET", "/v1/quotes/summary"): A,
    ("GET", "/v1/quotes/{quote_id}"): A,
    ("PUT", "/v1/quotes/{quote_id}"): A,
}
# Concrete paths whose role differs from their template's.
EXTRA = [
    ("GET", "/v1/registry/models", S),
    ("POST", "/v1/registry/models", S),
    ("GET", "/v1/registry/models/x", S),
    ("GET", "/v1/registry/agents", U),
    ("GET", "/v1/registry/tools", U),
]
# Routes other branches own (knowledge bases and their proof routes, part 2; playgrounds and agents, part 3).
ELSEWHERE = (
    "/v1/context/",
    "/v1/platform/embeddings",
    "/v1/platform/vector/",
    "/v1/playgrounds",
    "/v1/agent-projects",
    "/v1/agent-executions",
)
VALUES = {"user_id": "x", "model_id": "x", "quote_id": "1", "capability": "llm_inference", "entity_type": "agents"}


def concrete(path: str) -> str:
    import re

    return re.sub(r"\{(\w+)\}", lambda m: VALUES.get(m.group(1), "x"), path)


async def test_the_table_covers_every_genai_route():
    from fastapi import FastAPI

    from kiln.apps.genai.router import router

    probe = FastAPI()  # the surface's own routes, however the engine mounts them
    probe.include_router(router)
    spec = probe.openapi()
    served = {
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
        if "genai" in op.get("tags", []) and not p.startswith(ELSEWHERE)
    }
    assert served - set(ROUTES) == set(), "add the new routes to ROUTES with their role"
    assert set(ROUTES) - served == set()


async def test_each_role_and_anonymous_on_every_route(app, client):
    headers = await role_headers(app, client)
    cases = [(m, concrete(p), role) for (m, p), role in ROUTES.items()] + EXTRA
    failures = []
    for method, path, role in cases:
        kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        if path == "/auth/logout":
            continue  # checked below: it revokes the caller's token
        for who in ("anonymous", U, A, S):
            r = await client.request(method, path, headers=headers[who], **kwargs)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            allowed = role == P or (who != "anonymous" and RANK[who] >= RANK[role])
            if (
                allowed
                and r.status_code in (401, 403)
                and body.get("error") in ("missing_auth", "insufficient_role", "invalid_token")
            ):
                failures.append((method, path, who, r.status_code, body))
            if not allowed:
                expected = 401 if who == "anonymous" else 403
                if r.status_code != expected or set(body) - {"error", "message", "details"}:
                    failures.append((method, path, who, r.status_code, body))
            assert r.status_code < 500, (method, path, who, r.text)
    assert failures == []
    assert (await client.post("/auth/logout")).status_code == 401
    assert (await client.post("/auth/logout", headers=headers[U])).status_code == 200
