"""Policy rules: allow/deny per scope (user, group, org, role) and resource, with an action."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.apps.genai.errors import GenaiError
from kiln.apps.genai.policy.models import GenaiPolicyRule

SCOPES = ("user", "group", "org", "role")
ACTION = re.compile(r"^(\*|[a-z][a-z_]{0,31})$")


def rule_dto(r: GenaiPolicyRule) -> dict[str, Any]:
    return {
        "id": r.id,
        "scope_type": r.scope_type,
        "scope_id": r.scope_id,
        "resource_type": r.resource_type,
        "resource_id": r.resource_id,
        "effect": r.effect,
        "rule": r.rule or {},
        "created_by_user_id": r.created_by_user_id,
        "created_at": r.created_at.isoformat() if r.created_at else None,
    }


async def create_rule(session: AsyncSession, body: dict[str, Any], user_id: str) -> GenaiPolicyRule:
    scope_type = str(body.get("scope_type") or "").strip().lower()
    scope_id = str(body.get("scope_id") or "").strip()
    resource_type = str(body.get("resource_type") or "entity").strip().lower()
    resource_id = str(body.get("resource_id") or "").strip()
    effect = str(body.get("effect") or "").strip().lower()
    rule = body.get("rule") if isinstance(body.get("rule"), dict) else {}
    if not scope_type or not scope_id or not resource_id or not effect:
        raise GenaiError(400, "invalid_policy_rule", "scope_type, scope_id, resource_id and effect are required")
    if scope_type not in SCOPES or effect not in ("allow", "deny") or resource_type != "entity":
        raise GenaiError(400, "invalid_policy_rule", f"scope_type in {SCOPES}, effect allow|deny, resource_type entity")
    if len(scope_id) > 64 or len(resource_id) > 200:
        raise GenaiError(400, "invalid_policy_rule", "scope_id or resource_id too long")
    action = str(rule.get("action", "*"))
    if not ACTION.match(action):
        raise GenaiError(400, "invalid_policy_rule", "rule.action must be * or an action name like execute")
    row = GenaiPolicyRule(
        scope_type=scope_type,
        scope_id=scope_id,
        resource_type=resource_type,
        resource_id=resource_id,
        effect=effect,
        rule={"action": action},
        created_by_user_id=user_id,
    )
    session.add(row)
    await session.flush()
    return row


async def list_rules(
    session: AsyncSession, scope_type: str | None, scope_id: str | None, resource_id: str | None
) -> list[GenaiPolicyRule]:
    query = select(GenaiPolicyRule)
    if scope_type:
        query = query.where(GenaiPolicyRule.scope_type == scope_type)
    if scope_id:
        query = query.where(GenaiPolicyRule.scope_id == scope_id)
    if resource_id:
        query = query.where(GenaiPolicyRule.resource_id == resource_id)
    rows = await session.execute(query.order_by(GenaiPolicyRule.created_at.desc(), GenaiPolicyRule.id).limit(1000))
    return list(rows.scalars())


async def decide(session: AsyncSession, user_id: str, entity_id: str, action: str) -> str | None:
    """'deny' if a user-scoped deny matches, else 'allow' if an allow matches, else None."""
    rows = await session.execute(
        select(GenaiPolicyRule.effect, GenaiPolicyRule.rule).where(
            GenaiPolicyRule.scope_type == "user",
            GenaiPolicyRule.scope_id == user_id,
            GenaiPolicyRule.resource_id.in_([entity_id, "*"]),
        )
    )
    effects = {effect for effect, rule in rows if (rule or {}).get("action", "*") in ("*", action)}
    return "deny" if "deny" in effects else ("allow" if "allow" in effects else None)
