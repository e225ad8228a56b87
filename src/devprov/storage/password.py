"""How portal users' passwords are kept: argon2id hashes, by argon2-cffi.

argon2id is the password hash RFC 9106 recommends (section 4) and OWASP's Password Storage Cheat
Sheet puts first. The parameters are argon2-cffi's defaults, RFC 9106's second recommended
option (t=3 passes over 64 MiB, 4 lanes); they are written into each hash, so raising them later
leaves stored hashes verifiable.
"""

from __future__ import annotations

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Argon2idHasher:
    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher(type=argon2.Type.ID)

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
