"""Helpers of the LoRA tests: adapter files written by `safetensors`, a configured app."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from kiln.apps.lora.config import LoraSettings, set_lora_settings


def write_lora(
    path: Path,
    *,
    output_name: str | None = None,
    base: str | None = "sdxl_base_v1-0",
    tags: dict | str | None = None,
    rank: int = 4,
    extra: dict | None = None,
) -> Path:
    """A small Kohya-style LoRA file with `__metadata__` (all values strings, as the format wants)."""
    meta: dict[str, str] = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank / 2),
    }
    if output_name is not None:
        meta["ss_output_name"] = output_name
    if base is not None:
        meta["ss_base_model_version"] = base
    if tags is not None:
        meta["ss_tag_frequency"] = tags if isinstance(tags, str) else json.dumps(tags)
    meta.update(extra or {})
    tensors = {
        "lora_unet_down_blocks_0.lora_down.weight": np.zeros((rank, 8), dtype=np.float16),
        "lora_unet_down_blocks_0.lora_up.weight": np.zeros((8, rank), dtype=np.float16),
        "lora_unet_down_blocks_0.alpha": np.array(rank / 2, dtype=np.float16),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


def configure(app, lora_dir: Path, **overrides: object) -> LoraSettings:
    values: dict[str, object] = {"dir": lora_dir, "poll_interval": 0.05}
    values.update(overrides)
    cfg = LoraSettings(_env_file=None, **values)  # type: ignore[arg-type]
    set_lora_settings(app.state.kernel, cfg)
    return cfg


async def create(client, path: Path, name: str, **body: object) -> dict:
    response = await client.post("/v1/adapters", json={"name": name, "file_path": str(path), **body})
    assert response.status_code == 201, response.text
    return response.json()["adapter"]
