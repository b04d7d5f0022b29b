"""The genai surface's top router: one router per domain folder, all with the genai envelope.

Domains: identity (`/auth/*`, `/v1/auth/me`), runtime (`/v1/runtime/profile`), platform
(`/v1/platform/*`), modelops (`/v1/modelops/*`, `/v1/models/*`), registry (`/v1/registry/*`),
catalog (`/v1/catalog/*`), policy (`/v1/policy/rules`), content (`/v1/quotes*`,
`/v1/content/*`), system (`/health`, `/system/health`, `/v1/system/ping`, `/voice/*`).
"""

from __future__ import annotations

from fastapi import Depends

from kiln.apps.genai.agents.router import router as agents_router
from kiln.apps.genai.bootstrap import ensure_bootstrapped
from kiln.apps.genai.catalog.router import router as catalog_router
from kiln.apps.genai.content.router import router as content_router
from kiln.apps.genai.context.proof import router as proof_router
from kiln.apps.genai.context.router import router as context_router
from kiln.apps.genai.errors import genai_router
from kiln.apps.genai.identity.router import router as identity_router
from kiln.apps.genai.modelops.router import router as modelops_router
from kiln.apps.genai.modelops.routes_models import inference_router
from kiln.apps.genai.platform.router import router as platform_router
from kiln.apps.genai.playgrounds.router import router as playgrounds_router
from kiln.apps.genai.policy.router import router as policy_router
from kiln.apps.genai.registry.router import router as registry_router
from kiln.apps.genai.runtime.router import router as runtime_router
from kiln.apps.genai.system.router import router as system_router

# The first request of a process seeds the superadmin, platform and content (idempotent).
router = genai_router(dependencies=[Depends(ensure_bootstrapped)])
for domain_router in (
    inference_router,
    playgrounds_router,
    system_router,
    identity_router,
    runtime_router,
    platform_router,
    modelops_router,
    registry_router,
    catalog_router,
    policy_router,
    content_router,
    context_router,
    proof_router,
    agents_router,
):
    router.include_router(domain_router)
