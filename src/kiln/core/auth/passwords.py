"""Password hashing (argon2 via pwdlib) and the password policy (NIST SP 800-63B).

The policy, shared by every surface with a signup: 8 to 128 characters (Unicode code points,
spaces allowed, after NFKC normalisation), no composition rules, and refusal of passwords an
attacker tries first: the common-password list shipped in ``data/common-passwords.txt`` (see
``data/build_common_passwords.py`` for its source), a single repeated character, and the
account's own email address. Every refusal names what to change.

Passwords are NFKC-normalised before hashing, so the same password typed on two keyboards
(composed or decomposed "é", full-width digits) verifies; hashes stored before normalisation
still verify and are replaced on the next login.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from pathlib import Path

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError

MIN_LENGTH = 8
MAX_LENGTH = 128
# Verification reads at most this many characters: accounts created under the earlier limit
# of 256 still log in, and an unbounded body cannot make one request burn CPU and memory.
_VERIFY_MAX_LENGTH = 256
COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common-passwords.txt"

_hasher = PasswordHash.recommended()


class PasswordPolicyError(ValueError):
    """The password is refused; the message says what to change."""


def normalize(password: str) -> str:
    """The form a password is checked and hashed in (NIST SP 800-63B: NFKC)."""
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    return _hasher.hash(normalize(password))


def verify_password(password: str, password_hash: str) -> bool:
    ok, _ = verify_and_rehash(password, password_hash)
    return ok


def _verify(password: str, password_hash: str) -> tuple[bool, str | None]:
    try:
        return _hasher.verify_and_update(password, password_hash)
    except UnknownHashError:
        return False, None


def verify_and_rehash(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check `password`; on success also return a fresh hash when the stored one uses outdated
    parameters or was made before normalisation.

    A hash pwdlib cannot identify (corrupt row, foreign scheme) counts as a mismatch, not a crash.
    """
    if len(password) > _VERIFY_MAX_LENGTH:
        return False, None
    normalized = normalize(password)
    ok, updated = _verify(normalized, password_hash)
    if ok or normalized == password:
        return ok, updated
    ok, _ = _verify(password, password_hash)  # stored before normalisation
    return ok, (hash_password(password) if ok else None)


_DUMMY_HASH: str | None = None


def burn_verify_time(password: str) -> None:
    """Spend what a real verification costs, so unknown accounts are not told apart by timing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash("kiln-dummy-password-0")
    verify_and_rehash(password[:_VERIFY_MAX_LENGTH], _DUMMY_HASH)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped blocklist, lower-case, loaded once per process."""
    text = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, email: str | None = None) -> None:
    """Raise PasswordPolicyError naming what to change, or return None when the password is acceptable."""
    pw = normalize(password)
    if len(pw) < MIN_LENGTH:
        raise PasswordPolicyError(f"Password must be at least {MIN_LENGTH} characters long (this one has {len(pw)})")
    if len(pw) > MAX_LENGTH:
        raise PasswordPolicyError(f"Password must be at most {MAX_LENGTH} characters long (this one has {len(pw)})")
    if len(set(pw)) == 1:
        raise PasswordPolicyError("Password must not be one character repeated; use different characters")
    folded = pw.strip().casefold()
    if folded in common_passwords():
        raise PasswordPolicyError(
            "Password is one of the most commonly used passwords, which attackers try first; choose another"
        )
    if email:
        address = normalize(email).strip().casefold()
        if folded in {address, address.split("@")[0]}:
            raise PasswordPolicyError("Password must not be your email address or the part before the @")
