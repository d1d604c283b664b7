"""Crypto-shredding: one data key per stream, so a stream's sealed payloads can be made unreadable
forever without changing a byte of the log (docs/privacy.md).

- **Key hierarchy.** A master key (the key-encryption key, 32 random bytes in a file; its id is
  the first 16 hex digits of its SHA-256) wraps each stream's data key with AES key wrap (RFC
  3394, `cryptography`). Wrapped keys live in `stream_keys`, one row per (tenant, stream) with
  the id of the master key that wrapped it. Rotating the master key re-wraps the rows
  (`rewrap`); no event changes.
- **Sealing.** What a payload must be able to forget is serialised to JSON and encrypted with
  AES-256-GCM under the stream's data key, a random 96-bit nonce, and the event's identity as
  associated data (tenant, stream, version, type), so a ciphertext moved to another event does
  not open. The token is `v1.` + base64(nonce || ciphertext+tag).
- **Erasure.** `destroy` overwrites the wrapped key with NULL and records when and why; from
  then on `keys_for` answers None for the stream and every sealed payload of it stays closed.
  Which fields of which event are sealed is the vocabulary's business (projections/domain):
  this module knows streams, keys and bytes only.

The master key is configured once per process (`configure`, from service/runtime): the server
and the CLI load the same file. Nothing here caches an unwrapped data key beyond one call, so a
key destroyed by one process is unusable by every other from the next read on.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

KEY_BYTES = 32
NONCE_BYTES = 12
TOKEN_PREFIX = "v1."


class KeyUnavailable(Exception):
    """No master key is configured, or a stream key was wrapped by a master key this process
    does not hold (the operator rotated it elsewhere or pointed at the wrong file)."""


@dataclass(frozen=True)
class MasterKey:
    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(self.key).hexdigest()[:16]


def read_master_key(path: Path) -> MasterKey:
    """The master key in `path`: 32 bytes, base64 (urlsafe or standard) on one line."""
    text = path.read_text(encoding="ascii").strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise KeyUnavailable(f"{path} does not hold a base64 master key") from e
    if len(key) != KEY_BYTES:
        raise KeyUnavailable(f"{path} holds {len(key)} bytes; a master key is {KEY_BYTES} bytes of base64")
    return MasterKey(key)


def write_master_key(path: Path) -> MasterKey:
    """A new random master key written to `path` with mode 0600 (never over an existing file)."""
    key = MasterKey(secrets.token_bytes(KEY_BYTES))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(base64.urlsafe_b64encode(key.key).decode("ascii") + "\n")
    return key


_masters: dict[str, MasterKey] = {}
_current: MasterKey | None = None
_reload: Callable[[], bool] | None = None  # re-reads the key files; True when they changed
_checked_at = 0.0
RELOAD_EVERY_S = 1.0


def on_reload(reload: Callable[[], bool] | None) -> None:
    """How to re-read the master key files: `current_master` asks at most once a second, and an
    unknown key id asks at once, so a running server follows `scimledger keys rotate`."""
    global _reload
    _reload = reload


def _maybe_reload(*, now: bool = False) -> None:
    global _checked_at
    if _reload is None:
        return
    moment = time.monotonic()
    if now or moment - _checked_at >= RELOAD_EVERY_S:
        _checked_at = moment
        _reload()


def configure(*keys: MasterKey) -> None:
    """The process's master keys: the first wraps new stream keys; all of them unwrap (a second
    one is the old key during a rotation)."""
    global _current
    if not keys:
        raise ValueError("configure needs a master key")
    _masters.clear()
    _masters.update({k.id: k for k in keys})
    _current = keys[0]


def current_master_or_none() -> MasterKey | None:
    return _current


def current_master() -> MasterKey:
    _maybe_reload()
    if _current is None:
        raise KeyUnavailable("no master key is configured (SCIMLEDGER_MASTER_KEY_FILE)")
    return _current


def _master(kek_id: str) -> MasterKey:
    master = _masters.get(kek_id)
    if master is None:
        _maybe_reload(now=True)
        master = _masters.get(kek_id)
    if master is None:
        raise KeyUnavailable(
            f"a stream key is wrapped by master key {kek_id}, which this process does not hold "
            f"(it holds {', '.join(sorted(_masters)) or 'none'}); check SCIMLEDGER_MASTER_KEY_FILE"
        )
    return master


@dataclass(frozen=True)
class WrappedKey:
    kek_id: str
    wrapped: bytes


def new_stream_key() -> tuple[bytes, WrappedKey]:
    """A fresh data key and its wrapped form under the current master key."""
    master = current_master()
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    return key, WrappedKey(master.id, aes_key_wrap(master.key, key))


def unwrap(wrapped: WrappedKey) -> bytes:
    try:
        return aes_key_unwrap(_master(wrapped.kek_id).key, wrapped.wrapped)
    except InvalidUnwrap as e:
        raise KeyUnavailable(f"the stream key does not unwrap under master key {wrapped.kek_id}") from e


def associated_data(tenant_id: uuid.UUID, stream_id: uuid.UUID, version: int, event_type: str) -> bytes:
    """The event's identity, bound to its ciphertext: tenant and stream (16 bytes each), the
    version (4 bytes, big-endian), the type."""
    return event_data(stream_prefix(tenant_id, stream_id), version, event_type)


def stream_prefix(tenant_id: uuid.UUID, stream_id: uuid.UUID) -> bytes:
    """The part of `associated_data` every event of one stream shares."""
    return tenant_id.bytes + stream_id.bytes


def event_data(prefix: bytes, version: int, event_type: str) -> bytes:
    return prefix + version.to_bytes(4, "big") + event_type.encode()


def seal(plaintext: bytes, key: bytes, aad: bytes) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext, aad)
    return TOKEN_PREFIX + binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")


def open_sealed(token: str, key: bytes | AESGCM, aad: bytes) -> bytes:
    """The plaintext of `seal`; raises InvalidTag (cryptography) when the key, the event or the
    bytes are not the ones it was sealed with. `key` may be its AESGCM already (a rebuild opens
    every event of a stream with one)."""
    if not token.startswith(TOKEN_PREFIX):
        raise ValueError("not a sealed payload")
    raw = binascii.a2b_base64(token[len(TOKEN_PREFIX):])
    cipher = key if isinstance(key, AESGCM) else AESGCM(key)
    return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)


# --- the keys table ------------------------------------------------------------------------------

# the row a new stream key makes: here on its own, and as a CTE of an append (eventstore.store)
KEY_COLUMNS = "stream_keys (tenant_id, stream_id, kek_id, wrapped)"
INSERT_KEY = f"INSERT INTO {KEY_COLUMNS} VALUES ($1, $2, $3, $4)"


async def add_key(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID, wrapped: WrappedKey) -> None:
    await conn.execute(INSERT_KEY, tenant_id, stream_id, wrapped.kek_id, wrapped.wrapped)


Keys = dict[tuple[uuid.UUID, uuid.UUID], bytes | None]  # (tenant, stream) -> data key, None: destroyed


async def keys_for(conn: asyncpg.Connection, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> Keys:
    """The data keys of these (tenant, stream) pairs, unwrapped; None for a destroyed key.
    Streams without a key are absent. One statement."""
    wanted = set(pairs)
    if not wanted:
        return {}
    tenants, streams = zip(*wanted, strict=True)
    rows = await conn.fetch(
        """SELECT k.tenant_id, k.stream_id, k.kek_id, k.wrapped
           FROM unnest($1::uuid[], $2::uuid[]) AS w(tenant_id, stream_id)
           JOIN stream_keys k ON k.tenant_id = w.tenant_id AND k.stream_id = w.stream_id""",
        list(tenants), list(streams),
    )
    return _unwrapped(rows)


async def all_keys(conn: asyncpg.Connection) -> Keys:
    """Every stream key, unwrapped (a rebuild's: one statement in its snapshot)."""
    return _unwrapped(await conn.fetch("SELECT tenant_id, stream_id, kek_id, wrapped FROM stream_keys"))


def _unwrapped(rows: Iterable[asyncpg.Record]) -> Keys:
    return {
        (r["tenant_id"], r["stream_id"]):
            None if r["wrapped"] is None else unwrap(WrappedKey(r["kek_id"], bytes(r["wrapped"])))
        for r in rows
    }


async def destroy(
    conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID, reason: str
) -> bool:
    """Destroy the stream's key (its row keeps when and why, never the key). True if a live key
    was destroyed by this call; a stream without a key gets a destroyed row, so a later
    `keys_for` says "erased" for it too."""
    row = await conn.fetchrow(
        """INSERT INTO stream_keys AS k (tenant_id, stream_id, kek_id, wrapped, destroyed_at, destroyed_reason)
           VALUES ($1, $2, NULL, NULL, now(), $3)
           ON CONFLICT (tenant_id, stream_id) DO UPDATE
               SET kek_id = NULL, wrapped = NULL, destroyed_at = now(), destroyed_reason = $3
               WHERE k.destroyed_at IS NULL
           RETURNING (xmax <> 0) AS was_live""",
        tenant_id, stream_id, reason,
    )
    return row is not None and bool(row["was_live"])


async def destroyed_at(conn: asyncpg.Connection, tenant_id: uuid.UUID, stream_id: uuid.UUID) -> dt.datetime | None:
    value = await conn.fetchval(
        "SELECT destroyed_at FROM stream_keys WHERE tenant_id = $1 AND stream_id = $2", tenant_id, stream_id,
    )
    return value if isinstance(value, dt.datetime) else None


async def rewrap(conn: asyncpg.Connection, new: MasterKey, *, batch: int = 1000) -> int:
    """Re-wrap every live stream key under `new` (the old master key must be configured too);
    returns how many rows were re-wrapped. Events are not touched. Run inside a transaction so
    a failure leaves every key as it was."""
    done = 0
    while True:
        rows = await conn.fetch(
            """SELECT tenant_id, stream_id, kek_id, wrapped FROM stream_keys
               WHERE wrapped IS NOT NULL AND kek_id <> $1 LIMIT $2""",
            new.id, batch,
        )
        if not rows:
            return done
        await conn.executemany(
            "UPDATE stream_keys SET kek_id = $3, wrapped = $4 WHERE tenant_id = $1 AND stream_id = $2",
            [(r["tenant_id"], r["stream_id"], new.id,
              aes_key_wrap(new.key, unwrap(WrappedKey(r["kek_id"], bytes(r["wrapped"])))))
             for r in rows],
        )
        done += len(rows)
