"""`/v1/modelops/models*`, `/v1/modelops/sharing`, `/v1/models/inference|generate`."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Query
from sqlalchemy import select

from kiln.apps.genai.deps import AdminUser, CurrentUser, GenaiSettingsDep, KernelDep, SessionDep, SuperadminUser
from kiln.apps.genai.errors import GenaiError, genai_router
from kiln.apps.genai.modelops import inference, lifecycle, testing, usage
from kiln.apps.genai.modelops.access import model_for
from kiln.apps.genai.modelops.models import GenaiCredential, GenaiModel, GenaiModelScope, GenaiModelTestRun
from kiln.apps.genai.modelops.models import GenaiModelValidation as Validation
from kiln.apps.genai.modelops.serialize import model_dto, test_run_dto, validation_dto

router = genai_router(tags=["genai"])
# `/v1/models/*`: the hot path, its own router so that matching a call tries only these two routes
inference_router = genai_router(tags=["genai"])
JsonBody = Body(default_factory=dict)
ModelPath = "/v1/modelops/models/{model_id:path}"


async def dto(session, model: GenaiModel, kernel: Any = None) -> dict[str, Any]:
    credential = await session.get(GenaiCredential, model.credential_id) if model.credential_id else None
    summary = await usage.usage_summary(session, kernel, model.model_id) if kernel is not None else None
    return model_dto(model, credential, summary)


@router.get("/v1/modelops/models")
async def list_models(
    user: CurrentUser,
    session: SessionDep,
    settings: GenaiSettingsDep,
    eligible: bool = False,
    capability: str | None = Query(default=None, max_length=64),
) -> dict[str, Any]:
    rows = await lifecycle.list_models(session, settings, user, eligible=eligible, capability=capability)
    credentials = (
        {
            c.id: c
            for c in (
                await session.execute(
                    select(GenaiCredential).where(
                        GenaiCredential.id.in_({m.credential_id for m in rows if m.credential_id})
                    )
                )
            ).scalars()
        }
        if rows
        else {}
    )
    return {"models": [model_dto(m, credentials.get(m.credential_id or "")) for m in rows]}


@router.post("/v1/modelops/models", status_code=201)
async def create_model(user: CurrentUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    model = await lifecycle.create_model(session, user, body)
    await session.commit()
    return {"model": await dto(session, model)}


def _action(name: str):
    async def handler(
        model_id: str, user: CurrentUser, session: SessionDep, settings: GenaiSettingsDep
    ) -> dict[str, Any]:
        if name == "activate":
            model = await lifecycle.activate(session, settings, user, model_id)
        else:
            model = await getattr(lifecycle, name)(session, user, model_id)
        await session.commit()
        return {"model": await dto(session, model)}

    handler.__name__ = f"model_{name}"
    return handler


for _name in ("register", "activate", "deactivate", "unregister"):
    router.post(f"/v1/modelops/models/{{model_id:path}}/{_name}")(_action(_name))


@router.post("/v1/modelops/models/{model_id:path}/validate")
async def validate_model(
    model_id: str, user: AdminUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    model = await testing.validate(session, user, model_id, str(body.get("test_run_id") or ""))
    await session.commit()
    return {"model": await dto(session, model)}


@router.post("/v1/modelops/models/{model_id:path}/test")
async def test_model(
    model_id: str, user: AdminUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    provider_id = body.get("provider_instance_id")
    model, run, result = await testing.run_test(
        session, kernel, user, model_id, body.get("inputs") or {}, str(provider_id) if provider_id else None
    )
    await session.commit()
    return {"model": await dto(session, model), "test_run": test_run_dto(run), "result": result}


@router.get("/v1/modelops/models/{model_id:path}/tests")
async def list_tests(
    model_id: str, user: AdminUser, session: SessionDep, limit: int = Query(10, ge=1, le=200)
) -> dict[str, Any]:
    model = await model_for(session, user, model_id, "test")
    runs = await testing.history(session, GenaiModelTestRun, model.model_id, limit)
    return {"model_id": model.model_id, "tests": [test_run_dto(r) for r in runs]}


@router.get("/v1/modelops/models/{model_id:path}/test-runtimes")
async def test_runtimes(model_id: str, user: SuperadminUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    return await testing.test_runtimes(session, kernel, user, model_id)


@router.get("/v1/modelops/models/{model_id:path}/validations")
async def list_validations(
    model_id: str, user: CurrentUser, session: SessionDep, limit: int = Query(20, ge=1, le=200)
) -> dict[str, Any]:
    model = await model_for(session, user, model_id)
    rows = await testing.history(session, Validation, model.model_id, limit)
    return {"model_id": model.model_id, "validations": [validation_dto(r) for r in rows]}


@router.get("/v1/modelops/models/{model_id:path}/usage")
async def model_usage(model_id: str, user: CurrentUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    model = await model_for(session, user, model_id)
    return {"model_id": model.model_id, "usage": await usage.usage_summary(session, kernel, model.model_id)}


@router.patch("/v1/modelops/models/{model_id:path}/credential")
async def model_credential(
    model_id: str, user: CurrentUser, session: SessionDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    model = await lifecycle.set_credential(session, user, model_id, str(body.get("credential_id") or ""))
    await session.commit()
    return {"model": await dto(session, model)}


@router.get(ModelPath)
async def get_model(model_id: str, user: CurrentUser, session: SessionDep, kernel: KernelDep) -> dict[str, Any]:
    model = await model_for(session, user, model_id)
    out = await dto(session, model, kernel)
    out["validation_history"] = [
        validation_dto(r) for r in await testing.history(session, Validation, model.model_id, 20)
    ]
    return {"model": out}


@router.delete(ModelPath)
async def delete_model(model_id: str, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    await lifecycle.delete(session, user, model_id)
    await session.commit()
    return {"deleted": True, "model_id": model_id}


# ------------------------------------------------------------------------------ sharing


@router.get("/v1/modelops/sharing")
async def list_sharing(user: AdminUser, session: SessionDep) -> dict[str, Any]:
    rows = (await session.execute(select(GenaiModelScope).order_by(GenaiModelScope.scope))).scalars()
    return {"assignments": [{"scope": r.scope, "model_ids": list(r.model_ids or [])} for r in rows]}


@router.put("/v1/modelops/sharing")
async def put_sharing(user: AdminUser, session: SessionDep, body: dict[str, Any] = JsonBody) -> dict[str, Any]:
    scope = str(body.get("scope") or "")
    ids = body.get("model_ids")
    if scope not in ("user", "admin", "superadmin"):
        raise GenaiError(400, "invalid_scope", "scope must be a role: user, admin or superadmin")
    if not isinstance(ids, list) or len(ids) > 1000 or not all(isinstance(i, str) for i in ids):
        raise GenaiError(400, "invalid_model_ids", "model_ids must be a list of model ids")
    ids = list(dict.fromkeys(ids))
    known = set((await session.execute(select(GenaiModel.model_id).where(GenaiModel.model_id.in_(ids)))).scalars())
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise GenaiError(400, "unknown_model_ids", "Unknown model ids", {"model_ids": unknown[:50]})
    row = await session.get(GenaiModelScope, scope)
    if row is None:
        row = GenaiModelScope(scope=scope, model_ids=ids)
        session.add(row)
    else:
        row.model_ids = ids
    await session.commit()
    return {"assignment": {"scope": scope, "model_ids": ids}}


# ------------------------------------------------------------------------------ inference


def _number(value: Any, kind: type, low: float, high: float, name: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise GenaiError(400, f"invalid_{name}", f"{name} must be a number in [{low}, {high}]")
    return kind(value)


@inference_router.post("/v1/models/inference")
async def models_inference(
    user: CurrentUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    model_id = str(body.get("model") or "").strip()
    prompt = body.get("prompt")
    if not model_id:
        raise GenaiError(400, "invalid_model", "model is required")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > inference.MAX_MESSAGE_CHARS:
        raise GenaiError(400, "invalid_prompt", "prompt is required")
    messages = inference.coerce_history(body.get("history")) + [{"role": "user", "content": prompt}]
    result = await inference.invoke(session, kernel, user, model_id, messages)
    return {"output": result["output"], "response": result["response"]}


@inference_router.post("/v1/models/generate")
async def models_generate(
    user: CurrentUser, session: SessionDep, kernel: KernelDep, body: dict[str, Any] = JsonBody
) -> dict[str, Any]:
    model_id = str(body.get("model_id") or "").strip()
    if not model_id:
        raise GenaiError(400, "invalid_model_id", "model_id is required")
    messages = inference.coerce_history(body.get("history"))
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        messages.append({"role": "user", "content": prompt[: inference.MAX_MESSAGE_CHARS]})
    if not messages:
        raise GenaiError(400, "invalid_input", "history or prompt is required")
    result = await inference.invoke(
        session,
        kernel,
        user,
        model_id,
        messages,
        max_tokens=_number(body.get("max_tokens"), int, 1, 1_000_000, "max_tokens"),
        temperature=_number(body.get("temperature"), float, 0, 2, "temperature"),
    )
    return result
