"""Password hashing and prefixed bearer tokens.

Tokens (`pat_…`, `agk_…`, `reg_…`) carry 256 bits from `secrets`; only their SHA-256 is stored.
A fast hash is right here, unlike for passwords: the input is random, not guessable, and the
lookup by hash means the secret itself is never compared byte by byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError

PAT_PREFIX = "pat_"
AGENT_KEY_PREFIX = "agk_"
REGISTRATION_PREFIX = "reg_"

# HC_PASSWORD_HASHING=cheapest is for test suites only: it makes hashing fast and weak.
_hasher = (
    PasswordHasher.from_parameters(profiles.CHEAPEST)
    if os.environ.get("HC_PASSWORD_HASHING") == "cheapest"
    else PasswordHasher()
)


def new_token(prefix: str) -> tuple[str, str]:
    """A fresh token and the hash to store."""
    token = prefix + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def hash_password(password: str) -> str:
    # argon2 costs tens of milliseconds of CPU by design: keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# Verifying against this when the user does not exist keeps the answer time the same, so response
# times do not tell which emails have accounts.
DUMMY_PASSWORD_HASH = _hasher.hash(secrets.token_urlsafe(16))
