"""Fixtures of the security-event stream tests: the service in process with its key-encryption
key in a temporary data dir, a real push receiver on 127.0.0.1, and SET verification against the
service's own /.well-known/jwks.json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.app import push
from service.runtime.config import Settings
from tests.events.receiver import Receiver, start_receiver


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(log_json=True, default_rate_limit=1_000_000.0, data_dir=tmp_path / "var")


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries within a test's patience: the backoff capped at 0.3 s, a refused stream retried
    every 0.3 s (the production values are in service/app/push.py)."""
    monkeypatch.setattr(push, "BACKOFF_CAP_S", 0.3)
    monkeypatch.setattr(push, "ERROR_RETRY_S", 0.3)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await start_receiver()
    yield r
    await r.stop()
