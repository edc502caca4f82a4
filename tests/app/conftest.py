"""Shared fixture of the upd_core.app tests: tiny generated checkpoints (tests/app_fixtures)."""
from __future__ import annotations

import pytest

from tests.app_fixtures import env, shared_checkpoints


@pytest.fixture(scope="module")
def ckpts():
    root = shared_checkpoints()
    with env(UPD_CHECKPOINTS=str(root)):
        yield root
