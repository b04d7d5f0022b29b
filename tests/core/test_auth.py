"""Auth core: passwords, tokens, and the user store on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import jwt
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from kiln.core.auth import (
    UNSET,
    ApiToken,
    EmailAlreadyRegistered,
    InvalidRole,
    InvalidToken,
    LastSuperadmin,
    PasswordPolicyError,
    RevokedToken,
    User,
    UsernameTaken,
    authenticate,
    change_password,
    create_api_token,
    create_user,
    decode_access_token,
    generate_api_token,
    get_user,
    get_user_by_email,
    hash_api_token,
    hash_password,
    is_revoked,
    issue_access_token,
    list_api_tokens,
    list_users,
    purge_expired_revocations,
    resolve_api_token,
    revoke_api_token,
    revoke_token,
    set_active,
    set_role,
    update_profile,
    verify_and_rehash,
    verify_password,
)
from kiln.core.auth.service import purge_revocations_task
from kiln.core.db import Database
from kiln.core.jobs.registry import periodic_tasks

SECRET = "test-secret-" + "x" * 40
GOOD_PASSWORD = "correct horse 9"


# --- database fixtures ---------------------------------------------------------------------


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """An empty database built by the migration chain (conftest's db_url: SQLite and PostgreSQL)."""
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
async def session(db: Database) -> AsyncIterator[AsyncSession]:
    async with db.session() as s:
        yield s


# --- passwords ----------------------------------------------------------------------------


def test_hash_is_argon2_and_verifies():
    hashed = hash_password(GOOD_PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert GOOD_PASSWORD not in hashed
    assert verify_password(GOOD_PASSWORD, hashed)
    assert not verify_password("correct horse 8", hashed)
    assert hash_password(GOOD_PASSWORD) != hashed  # salted


def test_unknown_or_corrupt_hash_is_a_mismatch_not_a_crash():
    assert verify_and_rehash(GOOD_PASSWORD, "$2b$12$notreallybcrypt") == (False, None)
    assert verify_and_rehash(GOOD_PASSWORD, "") == (False, None)


def test_outdated_hash_parameters_are_rehashed():
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),)).hash(GOOD_PASSWORD)
    ok, new_hash = verify_and_rehash(GOOD_PASSWORD, weak)
    assert ok and new_hash is not None and new_hash != weak
    assert verify_and_rehash(GOOD_PASSWORD, new_hash) == (True, None)
    assert verify_and_rehash("wrong password 1", weak) == (False, None)


# --- tokens -------------------------------------------------------------------------------


def test_access_token_roundtrip_has_all_claims():
    issued = issue_access_token(SECRET, "user-1", "admin", 30)
    claims = decode_access_token(SECRET, issued.token)
    assert claims["sub"] == "user-1" and claims["role"] == "admin" and claims["type"] == "access"
    assert claims["jti"] == issued.jti and len(issued.jti) >= 16
    assert claims["exp"] - claims["iat"] == 30 * 60
    assert issued.expires_at == datetime.fromtimestamp(claims["exp"], UTC)
    assert issue_access_token(SECRET, "user-1", "admin", 30).jti != issued.jti
    assert issued.token not in repr(issued)


def test_expired_token_is_rejected_as_expired():
    issued = issue_access_token(SECRET, "u", "user", 1, now=datetime.now(UTC) - timedelta(minutes=5))
    with pytest.raises(InvalidToken) as info:
        decode_access_token(SECRET, issued.token)
    assert info.value.reason == "expired" and "log in" in info.value.message
    # Logout may still read it, to revoke it.
    assert decode_access_token(SECRET, issued.token, verify_exp=False)["sub"] == "u"


def _forge(claims: dict, key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_bad_tokens_are_rejected_with_a_reason():
    now = int(datetime.now(UTC).timestamp())
    base = {"sub": "u", "role": "user", "jti": "j" * 22, "iat": now, "exp": now + 600, "type": "access"}
    good = _forge(base)
    assert decode_access_token(SECRET, good)["sub"] == "u"
    cases = {
        "wrong secret": (_forge(base, key="another-secret-" + "y" * 40), "invalid"),
        "tampered": (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), "invalid"),
        "garbage": ("not.a.jwt", "invalid"),
        "alg none": (jwt.encode(base, None, algorithm="none"), "invalid"),
        "no jti": (_forge({k: v for k, v in base.items() if k != "jti"}), "invalid"),
        "no exp": (_forge({k: v for k, v in base.items() if k != "exp"}), "invalid"),
        "refresh type": (_forge({**base, "type": "refresh"}), "wrong_type"),
        "numeric sub": (_forge({**base, "sub": 5}), "invalid"),
    }
    for label, (token, reason) in cases.items():
        with pytest.raises(InvalidToken) as info:
            decode_access_token(SECRET, token)
        assert info.value.reason == reason, label


def test_api_tokens_are_random_and_only_hashed():
    plaintext, token_hash, prefix = generate_api_token()
    assert plaintext.startswith("kiln_") and len(plaintext) > 40
    assert plaintext.startswith(prefix) and len(prefix) == 11
    assert token_hash == hash_api_token(plaintext) and len(token_hash) == 64 and plaintext not in token_hash
    assert generate_api_token()[0] != plaintext


# --- user store ---------------------------------------------------------------------------


async def test_create_user_normalises_and_hashes(session):
    user = await create_user(session, "  Alice@Example.COM ", GOOD_PASSWORD, full_name="Alice")
    await session.commit()
    assert user.email == "alice@example.com"
    assert user.role == "user" and user.language == "en" and user.is_active
    assert user.password_hash != GOOD_PASSWORD and verify_password(GOOD_PASSWORD, user.password_hash)
    assert len(user.id) == 36 and user.created_at.tzinfo is not None and user.last_login_at is None
    again = await get_user_by_email(session, "ALICE@example.com")
    assert again is not None and again.id == user.id
    assert (await get_user(session, user.id)).full_name == "Alice"


async def test_duplicate_email_and_username_and_bad_input(session):
    await create_user(session, "bob@example.com", GOOD_PASSWORD, username="Bob")
    await session.commit()
    with pytest.raises(EmailAlreadyRegistered, match="already registered"):
        await create_user(session, "BOB@example.com", GOOD_PASSWORD)
    with pytest.raises(UsernameTaken):
        await create_user(session, "bob2@example.com", GOOD_PASSWORD, username="bob")
    with pytest.raises(InvalidRole, match="choose one of"):
        await create_user(session, "x@example.com", GOOD_PASSWORD, role="root")
    with pytest.raises(PasswordPolicyError):
        await create_user(session, "y@example.com", "short")
    assert await session.scalar(select(func.count()).select_from(User)) == 1


async def test_database_enforces_unique_email_and_role_check(db):
    async with db.session() as s:
        await create_user(s, "dup@example.com", GOOD_PASSWORD)
        await s.commit()
    async with db.session() as s:
        s.add(User(email="dup@example.com", password_hash="h"))
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            await s.commit()
    async with db.session() as s:
        s.add(User(email="role@example.com", password_hash="h", role="root"))
        with pytest.raises(Exception, match="(?i)check|ck_users_role"):
            await s.commit()


async def test_authenticate(session):
    user = await create_user(session, "carol@example.com", GOOD_PASSWORD, username="carol")
    await session.commit()
    assert await authenticate(session, "carol@example.com", "wrong password 1") is None
    assert await authenticate(session, "nobody@example.com", GOOD_PASSWORD) is None
    found = await authenticate(session, " CAROL@example.com", GOOD_PASSWORD)
    assert found is not None and found.id == user.id and found.last_login_at is not None
    assert (await authenticate(session, "Carol", GOOD_PASSWORD)).id == user.id
    await set_active(session, user, False)
    inactive = await authenticate(session, "carol@example.com", GOOD_PASSWORD)
    assert inactive is not None and not inactive.is_active  # caller decides "inactive" vs "wrong"


async def test_authenticate_upgrades_an_outdated_hash(session):
    user = await create_user(session, "dave@example.com", GOOD_PASSWORD)
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),)).hash(GOOD_PASSWORD)
    user.password_hash = weak
    await session.commit()
    assert await authenticate(session, "dave@example.com", GOOD_PASSWORD) is not None
    await session.commit()
    stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored != weak and verify_and_rehash(GOOD_PASSWORD, stored) == (True, None)


async def test_list_users_filters_and_paginates(session):
    for i in range(5):
        await create_user(
            session,
            f"u{i}@example.com",
            GOOD_PASSWORD,
            full_name=f"Person {i}",
            role="admin" if i % 2 else "user",
            is_active=i != 4,
        )
    await session.commit()
    items, total = await list_users(session, limit=2, offset=1)
    assert total == 5 and [u.email for u in items] == ["u1@example.com", "u2@example.com"]
    admins, total = await list_users(session, role="admin")
    assert total == 2 and {u.email for u in admins} == {"u1@example.com", "u3@example.com"}
    pending, total = await list_users(session, is_active=False)
    assert total == 1 and pending[0].email == "u4@example.com"
    found, total = await list_users(session, search="PERSON 3")
    assert total == 1 and found[0].email == "u3@example.com"
    assert (await list_users(session, search="u_@"))[1] == 0  # "_" is not a wildcard


async def test_roles_and_last_superadmin_guard(session):
    root = await create_user(session, "root@example.com", GOOD_PASSWORD, role="superadmin")
    user = await create_user(session, "eve@example.com", GOOD_PASSWORD)
    await session.commit()
    assert not user.has_role("admin")
    await set_role(session, user, "admin")
    assert user.has_role("admin") and user.has_role("user") and not user.has_role("superadmin")
    with pytest.raises(InvalidRole):
        await set_role(session, user, "owner")
    with pytest.raises(LastSuperadmin):
        await set_role(session, root, "admin")
    with pytest.raises(LastSuperadmin):
        await set_active(session, root, False)
    await set_role(session, user, "superadmin")
    await set_role(session, root, "user")  # allowed now that another superadmin exists
    await session.commit()
    assert (await get_user(session, root.id)).role == "user"


async def test_update_profile_and_change_password(session):
    user = await create_user(session, "fay@example.com", GOOD_PASSWORD, full_name="Fay", language="de")
    await update_profile(session, user, language="fr")
    assert (user.full_name, user.language) == ("Fay", "fr")
    await update_profile(session, user, full_name=None, language=UNSET)
    assert (user.full_name, user.language) == (None, "fr")
    with pytest.raises(PasswordPolicyError):
        await change_password(session, user, "fay@example.com")
    await change_password(session, user, "new secret 42")
    await session.commit()
    assert await authenticate(session, "fay@example.com", GOOD_PASSWORD) is None
    assert await authenticate(session, "fay@example.com", "new secret 42") is not None


async def test_revocation_by_jti_and_purge(session):
    now = datetime.now(UTC)
    assert not await is_revoked(session, "jti-1")
    await revoke_token(session, "jti-1", "user-1", now + timedelta(minutes=30))
    await revoke_token(session, "jti-1", "user-1", now + timedelta(minutes=30))  # twice is harmless
    await revoke_token(session, "jti-old", "user-1", now - timedelta(minutes=1))
    await session.commit()
    assert await is_revoked(session, "jti-1") and await is_revoked(session, "jti-old")
    stored = await session.get(RevokedToken, "jti-1")
    assert stored.user_id == "user-1" and stored.expires_at == now + timedelta(minutes=30)
    assert await purge_expired_revocations(session) == 1
    await session.commit()
    assert await is_revoked(session, "jti-1") and not await is_revoked(session, "jti-old")
    later = now + timedelta(hours=1)
    assert await purge_expired_revocations(session, now=later) == 1
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(RevokedToken)) == 0


async def test_purge_runs_as_a_periodic_task(db):
    spec = next(t for t in periodic_tasks() if t.name == "auth.purge_revocations")
    assert spec.fn is purge_revocations_task and spec.every == 3600
    now = datetime.now(UTC)
    async with db.session() as s:
        await revoke_token(s, "dead", "u", now - timedelta(seconds=1))
        await revoke_token(s, "live", "u", now + timedelta(minutes=5))
        await s.commit()
    await spec.fn(SimpleNamespace(db=db))
    async with db.session() as s:
        assert not await is_revoked(s, "dead") and await is_revoked(s, "live")


async def test_api_tokens_lifecycle(session):
    user = await create_user(session, "gus@example.com", GOOD_PASSWORD)
    token, plaintext = await create_api_token(session, user, "backup script")
    await session.commit()
    assert token.prefix == plaintext[:11] and token.last_used_at is None
    dump = await session.execute(text("SELECT * FROM api_tokens"))
    assert all(plaintext not in str(value) for row in dump for value in row)
    resolved = await resolve_api_token(session, plaintext)
    assert resolved is not None and resolved.id == user.id and token.last_used_at is not None
    first_use = token.last_used_at
    await resolve_api_token(session, plaintext, now=first_use + timedelta(seconds=5))
    assert token.last_used_at == first_use  # not rewritten on every request
    assert await resolve_api_token(session, plaintext + "x") is None
    assert await resolve_api_token(session, "Bearer-ish garbage") is None
    other = await create_user(session, "hal@example.com", GOOD_PASSWORD)
    assert not await revoke_api_token(session, other, token.id)  # not theirs
    assert [t.id for t in await list_api_tokens(session, user)] == [token.id]
    assert await revoke_api_token(session, user, token.id)
    await session.commit()
    assert await resolve_api_token(session, plaintext) is None
    assert await list_api_tokens(session, user) == []
    assert len(await list_api_tokens(session, user, include_revoked=True)) == 1


async def test_api_token_expiry_inactive_owner_and_cascade(session):
    user = await create_user(session, "ivy@example.com", GOOD_PASSWORD)
    now = datetime.now(UTC)
    _, short = await create_api_token(session, user, "short", expires_at=now + timedelta(minutes=1))
    _, forever = await create_api_token(session, user, "forever")
    await session.commit()
    assert await resolve_api_token(session, short) is not None
    assert await resolve_api_token(session, short, now=now + timedelta(minutes=2)) is None
    await set_active(session, user, False)
    assert await resolve_api_token(session, forever) is None
    await session.delete(user)
    await session.commit()
    assert await session.scalar(select(func.count()).select_from(ApiToken)) == 0
