"""Cloud model discovery through a saved credential, and the local model artifacts under
`KILN_HOME/models` (downloaded or copied there) with what is needed to register them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.config import genai_settings
from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.modelops.credentials import decrypt, get_credential
from kiln.apps.genai.modelops.hub import ensure_online, models_root
from kiln.apps.genai.modelops.models import GenaiModel
from kiln.apps.genai.runtime.guard import offline_guard
from kiln.core.auth import User
from kiln.providers.http import ProviderClient, ProviderError
from kiln.providers.llm import LLMClient

EMBEDDING_HINTS = ("embed", "bge", "e5-", "minilm", "mpnet")
MAX_ARTIFACTS = 500


def task_of(model_id: str) -> str:
    lowered = model_id.lower()
    return "embeddings" if any(h in lowered for h in EMBEDDING_HINTS) else "llm"


async def cloud_models(session: AsyncSession, kernel: Any, user: User, credential_id: str) -> list[dict[str, Any]]:
    await ensure_online(session, kernel)
    credential = await get_credential(session, user, credential_id)
    if not credential.is_active or credential.revoked_at is not None:
        raise GenaiError(400, "missing_config", "Active credential not found")
    if not credential.api_base_url:
        raise GenaiError(400, "missing_config", "Cloud credential is missing api_base_url")
    http = ProviderClient(
        credential.api_base_url,
        name=f"credential:{credential.display_name}",
        origin="cloud",
        api_key=decrypt(kernel, credential.id, credential.api_key_encrypted),
        timeout=genai_settings(kernel).provider_timeout_seconds,
        offline_guard=offline_guard(kernel),
    )
    try:
        rows = await LLMClient(http).models()
    except ProviderError as exc:
        raise GenaiError(502, "cloud_discovery_failed", f"Provider model listing failed: {exc.message}") from None
    finally:
        await http.aclose()
    out = []
    for row in rows[:1000]:
        mid = str(row["id"])[:255]
        task = task_of(mid)
        out.append(
            {
                "provider_model_id": mid,
                "name": mid,
                "owned_by": row.get("owned_by"),
                "created_at": row.get("created"),
                "task_key": task,
                "category": "generative" if task == "llm" else "predictive",
                "metadata": {},
            }
        )
    return out


def _scan(root: Path) -> list[dict[str, Any]]:
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir())[:MAX_ARTIFACTS]:
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        config: dict[str, Any] = {}
        config_path = entry / "config.json"
        if config_path.is_file() and config_path.stat().st_size < 1_000_000:
            try:
                loaded = json.loads(config_path.read_text())
                config = loaded if isinstance(loaded, dict) else {}
            except (ValueError, UnicodeDecodeError):
                config = {}
        embeddings = (entry / "sentence_bert_config.json").exists() or (entry / "modules.json").exists()
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file() and not f.is_symlink())
        found.append(
            {
                "path": str(entry),
                "name": entry.name,
                "has_config": bool(config_path.is_file()),
                "embeddings": embeddings,
                "architectures": config.get("architectures") or [],
                "model_type": config.get("model_type"),
                "size_bytes": size,
            }
        )
    return found


async def local_artifacts(session: AsyncSession, kernel: Any) -> list[dict[str, Any]]:
    entries = await asyncio.to_thread(_scan, models_root(kernel))
    paths = [e["path"] for e in entries]
    linked = (
        {
            m.local_path: m
            for m in (await session.execute(select(GenaiModel).where(GenaiModel.local_path.in_(paths)))).scalars()
        }
        if paths
        else {}
    )
    out = []
    for e in entries:
        model = linked.get(e["path"])
        task = "embeddings" if e["embeddings"] else "llm"
        source = e["name"].replace("--", "/", 1) if "--" in e["name"] else None
        out.append(
            {
                "artifact_id": e["name"],
                "artifact_type": "weights",
                "name": e["name"],
                "source_id": source,
                "storage_path": e["path"],
                "artifact_status": "ready" if e["has_config"] else "staged",
                "provenance": "hf_import" if source else "local_folder",
                "checksum": None,
                "linked_model_id": model.model_id if model else None,
                "suggested_model_id": e["name"].lower(),
                "task_key": model.task_key if model else task,
                "category": "predictive" if task == "embeddings" else "generative",
                "provider": "local",
                "lifecycle_state": model.lifecycle_state if model else None,
                "ready_for_registration": model is None and e["has_config"],
                "validation_hint": None if e["has_config"] else "config.json is missing",
                "runtime_requirements": {"size_bytes": e["size_bytes"]},
                "metadata": {"architectures": e["architectures"], "model_type": e["model_type"]},
            }
        )
    return out
