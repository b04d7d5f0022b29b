"""Every genai table, imported so the metadata (and Alembic) sees them. Tables are prefixed `genai_`."""

from __future__ import annotations

from kiln.apps.genai.agents.models import AgentExecution, AgentProject, AgentProjectVersion
from kiln.apps.genai.content.models import GenaiQuote
from kiln.apps.genai.context.models import Chunk, Document, KnowledgeBase, KnowledgeSource, SchemaProfile, SyncRun
from kiln.apps.genai.modelops.models import (
    GenaiCredential,
    GenaiDownload,
    GenaiModel,
    GenaiModelScope,
    GenaiModelTestRun,
    GenaiModelUsage,
    GenaiModelValidation,
)
from kiln.apps.genai.platform.models import (
    GenaiActivationAudit,
    GenaiActiveDeployment,
    GenaiBindingResource,
    GenaiDeployment,
    GenaiDeploymentBinding,
    GenaiProviderInstance,
)
from kiln.apps.genai.playgrounds.models import PlaygroundMessage, PlaygroundSession
from kiln.apps.genai.policy.models import GenaiPolicyRule
from kiln.apps.genai.registry.models import GenaiEntityShare, GenaiRegistryEntity, GenaiRegistryVersion
from kiln.apps.genai.runtime.models import GenaiRuntimeConfig

__all__ = [
    "AgentExecution",
    "AgentProject",
    "AgentProjectVersion",
    "PlaygroundMessage",
    "PlaygroundSession",
    "Chunk",
    "Document",
    "KnowledgeBase",
    "KnowledgeSource",
    "SchemaProfile",
    "SyncRun",
    "GenaiActivationAudit",
    "GenaiActiveDeployment",
    "GenaiBindingResource",
    "GenaiCredential",
    "GenaiDeployment",
    "GenaiDeploymentBinding",
    "GenaiDownload",
    "GenaiEntityShare",
    "GenaiModel",
    "GenaiModelScope",
    "GenaiModelTestRun",
    "GenaiModelUsage",
    "GenaiModelValidation",
    "GenaiPolicyRule",
    "GenaiProviderInstance",
    "GenaiQuote",
    "GenaiRegistryEntity",
    "GenaiRegistryVersion",
    "GenaiRuntimeConfig",
]
