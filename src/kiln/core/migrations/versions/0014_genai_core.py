"""Genai part 1: runtime config, platform control plane, ModelOps, registry, policy, quotes.

Revision ID: 0014_genai_core
Revises: 0013_arted
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from kiln.core.db import JSONType, UTCDateTime

revision = "0014_genai_core"
down_revision = "0013_arted"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "genai_activation_audit",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("previous_deployment_id", sa.String(length=36), nullable=True),
        sa.Column("activated_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("activated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_activation_audit")),
    )
    op.create_index(
        op.f("ix_genai_activation_audit_activated_at"), "genai_activation_audit", ["activated_at"], unique=False
    )
    op.create_index(
        op.f("ix_genai_activation_audit_deployment_id"), "genai_activation_audit", ["deployment_id"], unique=False
    )
    op.create_table(
        "genai_credentials",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_user_id", sa.String(length=36), nullable=True),
        sa.Column("credential_scope", sa.String(length=16), nullable=False),
        sa.Column("provider_slug", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("api_base_url", sa.String(length=2048), nullable=True),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_last4", sa.String(length=8), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_credentials")),
    )
    op.create_index(op.f("ix_genai_credentials_owner_user_id"), "genai_credentials", ["owner_user_id"], unique=False)
    op.create_table(
        "genai_deployments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("updated_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_deployments")),
        sa.UniqueConstraint("slug", name=op.f("uq_genai_deployments_slug")),
    )
    op.create_table(
        "genai_downloads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=255), nullable=False),
        sa.Column("target_dir", sa.String(length=1024), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=True),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("created_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_downloads")),
    )
    op.create_index(op.f("ix_genai_downloads_job_id"), "genai_downloads", ["job_id"], unique=False)
    op.create_table(
        "genai_model_scopes",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("model_ids", JSONType, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_genai_model_scopes")),
    )
    op.create_table(
        "genai_model_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "model_id", "user_id", "metric", name=op.f("pk_genai_model_usage")),
    )
    op.create_table(
        "genai_policy_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("scope_type", sa.String(length=16), nullable=False),
        sa.Column("scope_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=200), nullable=False),
        sa.Column("effect", sa.String(length=8), nullable=False),
        sa.Column("rule", JSONType, nullable=False),
        sa.Column("created_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_policy_rules")),
    )
    op.create_index(op.f("ix_genai_policy_rules_scope_type"), "genai_policy_rules", ["scope_type"], unique=False)
    op.create_table(
        "genai_provider_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("provider_key", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("endpoint_url", sa.String(length=2048), nullable=False),
        sa.Column("healthcheck_url", sa.String(length=2048), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("config", JSONType, nullable=False),
        sa.Column("secret_refs", JSONType, nullable=False),
        sa.Column("slot", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_provider_instances")),
        sa.UniqueConstraint("slug", name=op.f("uq_genai_provider_instances_slug")),
    )
    op.create_index(
        op.f("ix_genai_provider_instances_provider_key"), "genai_provider_instances", ["provider_key"], unique=False
    )
    op.create_table(
        "genai_quotes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("source_universe", sa.String(length=255), nullable=False),
        sa.Column("tone", sa.String(length=64), nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_approved", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("external_ref", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_quotes")),
        sa.UniqueConstraint("language", "text_hash", name="uq_genai_quote_text"),
    )
    op.create_index(op.f("ix_genai_quotes_language"), "genai_quotes", ["language"], unique=False)
    op.create_table(
        "genai_registry_entities",
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("owner_user_id", sa.String(length=36), nullable=True),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", name=op.f("pk_genai_registry_entities")),
    )
    op.create_index(
        op.f("ix_genai_registry_entities_entity_type"), "genai_registry_entities", ["entity_type"], unique=False
    )
    op.create_index(
        op.f("ix_genai_registry_entities_owner_user_id"), "genai_registry_entities", ["owner_user_id"], unique=False
    )
    op.create_table(
        "genai_runtime_config",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("updated_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_genai_runtime_config")),
    )
    op.create_table(
        "genai_active_deployment",
        sa.Column("singleton_key", sa.String(length=16), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("previous_deployment_id", sa.String(length=36), nullable=True),
        sa.Column("activated_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("activated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["genai_deployments.id"],
            name=op.f("fk_genai_active_deployment_deployment_id_genai_deployments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("singleton_key", name=op.f("pk_genai_active_deployment")),
    )
    op.create_table(
        "genai_deployment_bindings",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("deployment_id", sa.String(length=36), nullable=False),
        sa.Column("capability_key", sa.String(length=64), nullable=False),
        sa.Column("provider_instance_id", sa.String(length=36), nullable=False),
        sa.Column("binding_config", JSONType, nullable=False),
        sa.Column("resource_policy", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["genai_deployments.id"],
            name=op.f("fk_genai_deployment_bindings_deployment_id_genai_deployments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_instance_id"],
            ["genai_provider_instances.id"],
            name=op.f("fk_genai_deployment_bindings_provider_instance_id_genai_provider_instances"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_deployment_bindings")),
        sa.UniqueConstraint("deployment_id", "capability_key", name="uq_genai_binding_capability"),
    )
    op.create_index(
        op.f("ix_genai_deployment_bindings_deployment_id"), "genai_deployment_bindings", ["deployment_id"], unique=False
    )
    op.create_index(
        op.f("ix_genai_deployment_bindings_provider_instance_id"),
        "genai_deployment_bindings",
        ["provider_instance_id"],
        unique=False,
    )
    op.create_table(
        "genai_entity_shares",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("grantee_type", sa.String(length=16), nullable=False),
        sa.Column("grantee_id", sa.String(length=64), nullable=True),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("shared_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["genai_registry_entities.entity_id"],
            name=op.f("fk_genai_entity_shares_entity_id_genai_registry_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_entity_shares")),
        sa.UniqueConstraint("entity_id", "grantee_type", "grantee_id", "permission", name="uq_genai_share"),
    )
    op.create_index(op.f("ix_genai_entity_shares_entity_id"), "genai_entity_shares", ["entity_id"], unique=False)
    op.create_table(
        "genai_models",
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("node_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("task_key", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("backend_kind", sa.String(length=16), nullable=False),
        sa.Column("hosting_kind", sa.String(length=16), nullable=False),
        sa.Column("source_kind", sa.String(length=32), nullable=False),
        sa.Column("availability", sa.String(length=16), nullable=False),
        sa.Column("runtime_mode_policy", sa.String(length=16), nullable=False),
        sa.Column("lifecycle_state", sa.String(length=16), nullable=False),
        sa.Column("visibility_scope", sa.String(length=16), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_user_id", sa.String(length=36), nullable=True),
        sa.Column("provider_model_id", sa.String(length=255), nullable=True),
        sa.Column("credential_id", sa.String(length=36), nullable=True),
        sa.Column("source_id", sa.String(length=255), nullable=True),
        sa.Column("local_path", sa.String(length=1024), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("is_validation_current", sa.Boolean(), nullable=False),
        sa.Column("last_validation_status", sa.String(length=16), nullable=True),
        sa.Column("last_validated_at", UTCDateTime(), nullable=True),
        sa.Column("last_validation_error", sa.Text(), nullable=True),
        sa.Column("last_validation_config_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("revision", sa.String(length=128), nullable=True),
        sa.Column("checksum", sa.String(length=128), nullable=True),
        sa.Column("model_size_billion", sa.Float(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["genai_credentials.id"],
            name=op.f("fk_genai_models_credential_id_genai_credentials"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_genai_models")),
    )
    op.create_index(op.f("ix_genai_models_lifecycle_state"), "genai_models", ["lifecycle_state"], unique=False)
    op.create_index(op.f("ix_genai_models_owner_user_id"), "genai_models", ["owner_user_id"], unique=False)
    op.create_table(
        "genai_registry_versions",
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("entity_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("created_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["genai_registry_entities.entity_id"],
            name=op.f("fk_genai_registry_versions_entity_id_genai_registry_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", name=op.f("pk_genai_registry_versions")),
        sa.UniqueConstraint("entity_id", "version", name="uq_genai_registry_version"),
    )
    op.create_index(
        op.f("ix_genai_registry_versions_entity_id"), "genai_registry_versions", ["entity_id"], unique=False
    )
    op.create_table(
        "genai_binding_resources",
        sa.Column("binding_id", sa.String(length=36), nullable=False),
        sa.Column("resource_id", sa.String(length=255), nullable=False),
        sa.Column("resource_kind", sa.String(length=32), nullable=False),
        sa.Column("ref_type", sa.String(length=32), nullable=False),
        sa.Column("managed_model_id", sa.String(length=200), nullable=True),
        sa.Column("knowledge_base_id", sa.String(length=36), nullable=True),
        sa.Column("provider_resource_id", sa.String(length=512), nullable=True),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["binding_id"],
            ["genai_deployment_bindings.id"],
            name=op.f("fk_genai_binding_resources_binding_id_genai_deployment_bindings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("binding_id", "resource_id", name=op.f("pk_genai_binding_resources")),
    )
    op.create_index(
        op.f("ix_genai_binding_resources_knowledge_base_id"),
        "genai_binding_resources",
        ["knowledge_base_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_genai_binding_resources_managed_model_id"),
        "genai_binding_resources",
        ["managed_model_id"],
        unique=False,
    )
    op.create_table(
        "genai_model_test_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("task_key", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("input_payload", JSONType, nullable=False),
        sa.Column("output_payload", JSONType, nullable=False),
        sa.Column("error_details", JSONType, nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("config_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("tested_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["genai_models.model_id"],
            name=op.f("fk_genai_model_test_runs_model_id_genai_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_model_test_runs")),
    )
    op.create_index(op.f("ix_genai_model_test_runs_model_id"), "genai_model_test_runs", ["model_id"], unique=False)
    op.create_table(
        "genai_model_validations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("validator_kind", sa.String(length=32), nullable=False),
        sa.Column("trigger_reason", sa.String(length=64), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("error_details", JSONType, nullable=False),
        sa.Column("config_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("validated_by_user_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["genai_models.model_id"],
            name=op.f("fk_genai_model_validations_model_id_genai_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genai_model_validations")),
    )
    op.create_index(op.f("ix_genai_model_validations_model_id"), "genai_model_validations", ["model_id"], unique=False)


def downgrade() -> None:
    op.drop_table("genai_model_validations")
    op.drop_table("genai_model_test_runs")
    op.drop_table("genai_binding_resources")
    op.drop_table("genai_registry_versions")
    op.drop_table("genai_models")
    op.drop_table("genai_entity_shares")
    op.drop_table("genai_deployment_bindings")
    op.drop_table("genai_active_deployment")
    op.drop_table("genai_runtime_config")
    op.drop_table("genai_registry_entities")
    op.drop_table("genai_quotes")
    op.drop_table("genai_provider_instances")
    op.drop_table("genai_policy_rules")
    op.drop_table("genai_model_usage")
    op.drop_table("genai_model_scopes")
    op.drop_table("genai_downloads")
    op.drop_table("genai_deployments")
    op.drop_table("genai_credentials")
    op.drop_table("genai_activation_audit")
