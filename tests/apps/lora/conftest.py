"""Fixtures of the LoRA tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.sdnext import fake_sdnext  # noqa: F401  (fixture)


@pytest.fixture
def lora_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "loras"
    folder.mkdir()
    return folder
