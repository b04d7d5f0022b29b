"""Login JWTs (HS256, with a `jti` so logout can revoke one token) and API tokens for scripts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

ALGORITHM = "HS256"
ACCESS_TYPE = "access"
API_TOKEN_PREFIX = "kiln_"
# What is shown in listings so a user can tell tokens apart: "kiln_" plus 6 characters of the secret.
DISPLAY_PREFIX_LENGTH = len(API_TOKEN_PREFIX) + 6
# Small tolerance for clock skew between processes that issue and check tokens.
LEEWAY_SECONDS = 10
# Verified tokens remembered so a client's next request skips the signature check (~60 us);
# only expiry can change for a verified token, and it is checked again on every use.
VERIFIED_CACHE_SIZE = 4096
_verified: dict[tuple[str, str], dict[str, Any]] = {}


class InvalidToken(Exception):
    """A token that cannot be accepted; `reason` is one of expired, invalid, wrong_type."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime

    def __repr__(self) -> str:  # the token itself is a credential; keep it out of logs
        return f"IssuedToken(jti={self.jti!r}, expires_at={self.expires_at.isoformat()!r})"


def issue_access_token(
    secret: str, user_id: str, role: str, minutes: int, *, now: datetime | None = None
) -> IssuedToken:
    issued = (now or datetime.now(UTC)).replace(microsecond=0)
    expires_at = issued + timedelta(minutes=minutes)
    jti = secrets.token_urlsafe(16)
    claims = {
        "sub": user_id,
        "role": role,
        "jti": jti,
        "iat": int(issued.timestamp()),
        "exp": int(expires_at.timestamp()),
        "type": ACCESS_TYPE,
    }
    return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), jti, expires_at)


def decode_access_token(secret: str, token: str, *, verify_exp: bool = True) -> dict[str, Any]:
    """Verify signature, expiry and required claims; return the claims or raise InvalidToken.

    `verify_exp=False` is for logout, which should revoke a token even if it is about to expire.
    """
    known = _verified.get((secret, token)) if verify_exp else None
    if known is not None:
        if int(known["exp"]) <= datetime.now(UTC).timestamp() - LEEWAY_SECONDS:
            raise InvalidToken("expired", "Token expired; log in again")
        return dict(known)
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinned: never let the token pick its own algorithm
            leeway=LEEWAY_SECONDS,
            options={"require": ["sub", "jti", "iat", "exp"], "verify_exp": verify_exp},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("expired", "Token expired; log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidToken("invalid", "Token invalid; log in again to get a new one") from exc
    if claims.get("type") != ACCESS_TYPE:
        raise InvalidToken("wrong_type", "Token is not an access token; log in again to get one")
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise InvalidToken("invalid", "Token invalid; log in again to get a new one")
    if verify_exp and isinstance(claims["exp"], int):
        if len(_verified) >= VERIFIED_CACHE_SIZE:
            del _verified[next(iter(_verified))]  # the oldest entry
        _verified[(secret, token)] = dict(claims)
    return claims


def expires_at_of(claims: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(claims["exp"]), UTC)


def looks_like_api_token(token: str) -> bool:
    return token.startswith(API_TOKEN_PREFIX)


def generate_api_token() -> tuple[str, str, str]:
    """Return (plaintext, sha256 hex to store, display prefix). The plaintext is shown once, never stored."""
    plaintext = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    return plaintext, hash_api_token(plaintext), plaintext[:DISPLAY_PREFIX_LENGTH]


def hash_api_token(plaintext: str) -> str:
    # A fast hash is enough: the secret has 256 random bits, so there is nothing to brute-force.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_token_matches(plaintext: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_api_token(plaintext), token_hash)
