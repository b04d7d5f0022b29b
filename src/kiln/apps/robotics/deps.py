"""The surface's FastAPI dependencies, shared by the domain routers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends

from kiln.apps.robotics.config import RoboticsSettings, reading_roots, recording_roots, robotics_settings
from kiln.core.deps import KernelDep


def _robotics_settings(kernel: KernelDep) -> RoboticsSettings:
    return robotics_settings(kernel)


RoboticsSettingsDep = Annotated[RoboticsSettings, Depends(_robotics_settings)]


def _reading_roots(kernel: KernelDep) -> list[Path]:
    return reading_roots(kernel)


# Where a registered recording may be read from: the recording roots plus the uploads folder.
ReadingRootsDep = Annotated[list[Path], Depends(_reading_roots)]


def _recording_roots(kernel: KernelDep) -> list[Path]:
    return recording_roots(kernel)


# Folders recordings may be registered from.
RecordingRootsDep = Annotated[list[Path], Depends(_recording_roots)]
