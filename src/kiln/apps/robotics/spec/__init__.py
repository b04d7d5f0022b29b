"""Conversion spec documents (v2): models, loading with migration, capabilities, drafts."""

from kiln.apps.robotics.spec.capabilities import capabilities
from kiln.apps.robotics.spec.draft import DraftRequest, DraftResult, build_draft
from kiln.apps.robotics.spec.migrate import (
    SpecError,
    auto_mapping,
    build_legacy_spec,
    dump_spec_document,
    load_spec,
    load_spec_document,
    representation_policy,
)
from kiln.apps.robotics.spec.models import SPEC_VERSION, ConversionSpec, SpecDocument

__all__ = [
    "SPEC_VERSION",
    "ConversionSpec",
    "DraftRequest",
    "DraftResult",
    "SpecDocument",
    "SpecError",
    "auto_mapping",
    "build_draft",
    "build_legacy_spec",
    "capabilities",
    "dump_spec_document",
    "load_spec",
    "load_spec_document",
    "representation_policy",
]
