"""Operations tests write as fast as they can: no tenant rate limit in the way."""

from __future__ import annotations

import pytest

from service.runtime.config import Settings


@pytest.fixture
def settings() -> Settings:
    return Settings(log_json=True, default_rate_limit=100_000.0)
