"""The keys of trusted issuers (workload identity federation): JWKS fetched from the issuer's URL
and cached per worker, or given as a file at registration (stored with the client).

The cache is bounded in time (TTL, at most MAX_TTL_S) and in size; an assertion signed with a
key id the cached set does not hold triggers one refetch (at most once per REFETCH_AFTER_S per
URL, so a stream of bogus key ids cannot turn the token endpoint into a fetch amplifier). A
fetch is bounded in time and size. Keys are parsed and used by joserfc, never by hand.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from joserfc.jwk import KeySet

TTL_S = 300.0
MAX_TTL_S = 3600.0
REFETCH_AFTER_S = 30.0
FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 256 * 1024
MAX_ENTRIES = 1000


class JwksUnavailable(Exception):
    """The issuer's key set could not be fetched or parsed."""


def parse_key_set(data: Any) -> KeySet:
    """A JWKS document (RFC 7517 5) as a key set; public keys only."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise JwksUnavailable("a JWKS must be a JSON object with a non-empty `keys` array")
    public = [{k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "k")}
              for key in data["keys"] if isinstance(key, dict)]
    try:
        return KeySet.import_key_set({"keys": public})
    except Exception as e:  # joserfc raises several error types for malformed keys
        raise JwksUnavailable(f"the JWKS holds a key that cannot be used: {e}") from e


def key_ids(keys: KeySet) -> set[str]:
    return {k.kid for k in keys.keys if k.kid}


@dataclass
class _Entry:
    keys: KeySet
    fetched: float
    refetched_for_kid: float = float("-inf")  # when an unknown key id last forced a fetch


class JwksCache:
    """One per worker: URL -> key set."""

    def __init__(self, *, ttl_s: float = TTL_S) -> None:
        self._ttl = min(ttl_s, MAX_TTL_S)
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def keys(self, url: str, *, kid: str | None = None) -> KeySet:
        """The key set of `url`, refetched when stale or when it lacks `kid`."""
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:  # one fetch per URL at a time; the others wait for its answer
            entry = self._entries.get(url)
            now = time.monotonic()
            if entry is not None and now - entry.fetched < self._ttl:
                if kid is None or kid in key_ids(entry.keys):
                    return entry.keys
                if now - entry.refetched_for_kid < REFETCH_AFTER_S:
                    return entry.keys  # the key id is unknown, and was looked for recently
            keys = await fetch(url)
            if len(self._entries) >= MAX_ENTRIES and url not in self._entries:
                self._entries.pop(next(iter(self._entries)))
            unknown_kid = entry is not None and now - entry.fetched < self._ttl
            self._entries[url] = _Entry(keys, time.monotonic(), time.monotonic() if unknown_kid else float("-inf"))
            return keys


async def fetch(url: str) -> KeySet:
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            if response.status != 200:
                raise JwksUnavailable(f"the JWKS URL answered {response.status}")
            raw = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(raw) > MAX_JWKS_BYTES:
                raise JwksUnavailable(f"the JWKS exceeds {MAX_JWKS_BYTES} bytes")
    except (aiohttp.ClientError, TimeoutError) as e:
        raise JwksUnavailable(f"the JWKS URL could not be fetched: {type(e).__name__}") from e
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise JwksUnavailable("the JWKS is not JSON") from e
    return parse_key_set(data)
