"""The keys that sign the service's Security Event Tokens (RFC 8417), and the sealing of secrets
at rest (those keys, and the header values of push streams).

- Signing: ES256 (ECDSA P-256, RFC 7518 3.4) through joserfc. The newest key signs; `rotate`
  makes a new one and leaves the previous one published at /.well-known/jwks.json for the
  overlap, so a SET signed before the rotation stays verifiable. The key id is the key's
  RFC 7638 thumbprint. The first key is made when the service first starts.
- At rest: a private key or a push header value is stored sealed with AES-256-GCM under the
  key-encryption key (KEK), 32 random bytes in `set-signing.kek` beside the master key file
  (`<data dir>` by default; service/runtime/keys.py, keys_dir), created with mode
  0600 on first use. The database alone never yields a private key or a receiver's credential;
  every process that signs or pushes (all `serve` workers and hosts, the CLI) must see the same
  KEK file (mount one secret on every host; docs/events.md). Nothing here is ever logged.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwt
from joserfc.jwk import ECKey

KEK_FILE = "set-signing.kek"
KEY_LOCK = 0x5C1_5E7  # advisory lock: one process makes the first key
ALGORITHM = "ES256"
SET_TYPE = "secevent+jwt"  # the JWS `typ` of a SET (RFC 8417 2.3)
DEFAULT_OVERLAP = dt.timedelta(days=7)
REFRESH_S = 10.0  # a signer looks for a newer key this often (a rotation reaches every worker)
_NONCE = 12


class KeyUnavailable(Exception):
    """The KEK cannot be read, or a sealed value does not open with it (another KEK)."""


def key_encryption_key(folder: Path) -> bytes:
    """The KEK in `folder`, created (mode 0600, atomically) if there is none."""
    path = folder.expanduser() / KEK_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{KEK_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(temporary, path)  # fails if another process made it first: theirs is kept
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
        raw = path.read_bytes()
    if len(raw) != 32:
        raise KeyUnavailable(f"{path} must hold 32 bytes")
    return raw


def seal(kek: bytes, plaintext: bytes, context: bytes) -> bytes:
    """nonce || AES-256-GCM(plaintext), bound to `context` (what the value is for)."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, context)


def unseal(kek: bytes, sealed: bytes, context: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(sealed[:_NONCE], sealed[_NONCE:], context)
    except Exception as e:  # InvalidTag: another KEK, or a value moved to another context
        raise KeyUnavailable("a sealed value does not open with this key-encryption key") from e


def _new_key() -> ECKey:
    key = ECKey.generate_key("P-256", private=True)
    return ECKey.import_key(key.as_dict(private=True), {"kid": key.thumbprint(), "alg": ALGORITHM, "use": "sig"})


async def _insert(conn: asyncpg.Connection, kek: bytes, key: ECKey) -> str:
    kid = str(key.kid)
    await conn.execute(
        "INSERT INTO set_signing_keys (kid, public_jwk, private_key) VALUES ($1, $2, $3)",
        kid, key.as_dict(private=False), seal(kek, key.as_pem(private=True), kid.encode()),
    )
    return kid


async def ensure_signing_key(conn: asyncpg.Connection, kek: bytes) -> str:
    """The id of the signing key, made now if the service has none (its first start)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
        kid = await conn.fetchval("SELECT kid FROM set_signing_keys ORDER BY created_at DESC LIMIT 1")
        return str(kid) if kid is not None else await _insert(conn, kek, _new_key())


async def rotate(conn: asyncpg.Connection, kek: bytes, overlap: dt.timedelta = DEFAULT_OVERLAP) -> str:
    """A new signing key; the keys before it stay published for `overlap`. Returns its id."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", KEY_LOCK)
        await conn.execute(
            "UPDATE set_signing_keys SET retire_after = now() + $1::interval WHERE retire_after IS NULL", overlap
        )
        return await _insert(conn, kek, _new_key())


@dataclass(frozen=True, slots=True)
class KeyInfo:
    kid: str
    created_at: dt.datetime
    retire_after: dt.datetime | None


async def list_keys(conn: asyncpg.Connection) -> list[KeyInfo]:
    records = await conn.fetch("SELECT kid, created_at, retire_after FROM set_signing_keys ORDER BY created_at")
    return [KeyInfo(r["kid"], r["created_at"], r["retire_after"]) for r in records]


async def published_keys(conn: asyncpg.Connection) -> dict[str, Any]:
    """The JWKS (RFC 7517 5) receivers verify SETs with: the signing key and those still in
    their overlap; public parts only."""
    records = await conn.fetch(
        """SELECT public_jwk FROM set_signing_keys WHERE retire_after IS NULL OR retire_after > now()
           ORDER BY created_at DESC"""
    )
    return {"keys": [r["public_jwk"] for r in records]}


class Signer:
    """Signs SETs with the newest key, looked up at most every REFRESH_S (one per process)."""

    def __init__(self, kek: bytes, issuer: str) -> None:
        self._kek = kek
        self.issuer = issuer
        self._key: ECKey | None = None
        self._checked = float("-inf")

    async def refresh(self, conn: asyncpg.Connection) -> None:
        if self._key is not None and time.monotonic() - self._checked < REFRESH_S:
            return
        record = await conn.fetchrow("SELECT kid, private_key FROM set_signing_keys ORDER BY created_at DESC LIMIT 1")
        if record is None:
            await ensure_signing_key(conn, self._kek)
            record = await conn.fetchrow("SELECT kid, private_key FROM set_signing_keys ORDER BY created_at DESC LIMIT 1")
        assert record is not None
        if self._key is None or self._key.kid != record["kid"]:
            pem = unseal(self._kek, record["private_key"], record["kid"].encode())
            self._key = ECKey.import_key(pem, {"kid": record["kid"], "alg": ALGORITHM})
        self._checked = time.monotonic()

    def sign(self, claims: Mapping[str, Any], *, audience: str, jti: str) -> str:
        """The SET: `claims` (subject, events, txn, toe) with iss, aud, iat and jti, signed."""
        if self._key is None:
            raise KeyUnavailable("no signing key loaded (call refresh first)")
        payload = {"iss": self.issuer, "aud": audience, "iat": int(time.time()), "jti": jti, **claims}
        header = {"alg": ALGORITHM, "typ": SET_TYPE, "kid": self._key.kid}
        return jwt.encode(header, payload, self._key)
