"""Password hashing (argon2 via pwdlib) and the minimum password policy."""

from __future__ import annotations

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError

MIN_LENGTH = 8
# argon2 copes with long input, but an unbounded body would let one request burn CPU and memory.
MAX_LENGTH = 256

_hasher = PasswordHash.recommended()


class PasswordPolicyError(ValueError):
    """The password is too weak; the message says what to change."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    ok, _ = verify_and_rehash(password, password_hash)
    return ok


def verify_and_rehash(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check `password`; on success also return a fresh hash when the stored one uses outdated parameters.

    A hash pwdlib cannot identify (corrupt row, foreign scheme) counts as a mismatch, not a crash.
    """
    if len(password) > MAX_LENGTH:
        return False, None
    try:
        return _hasher.verify_and_update(password, password_hash)
    except UnknownHashError:
        return False, None


_DUMMY_HASH: str | None = None


def burn_verify_time(password: str) -> None:
    """Spend what a real verification costs, so unknown accounts are not told apart by timing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("kiln-dummy-password-0")
    verify_and_rehash(password[:MAX_LENGTH], _DUMMY_HASH)


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise PasswordPolicyError naming what to fix, or return None when the password is acceptable."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"Password must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"Password must be at most {MAX_LENGTH} characters long")
    if password.strip() == "":
        raise PasswordPolicyError("Password must not be only whitespace")
    if len(set(password)) == 1:
        raise PasswordPolicyError("Password must not repeat a single character; mix different characters")
    if not any(ch.isalpha() for ch in password):
        raise PasswordPolicyError("Password must contain at least one letter")
    if not any(not ch.isalpha() and not ch.isspace() for ch in password):
        raise PasswordPolicyError("Password must contain at least one digit or symbol besides letters")
    if email and password.strip().lower() in {email.strip().lower(), email.split("@")[0].strip().lower()}:
        raise PasswordPolicyError("Password must not be your email address or its user name part")
