"""Locating the shared test data (`<repo root>/../shared/data`, or $FHIRLEAD_SHARED_DATA).

A fresh clone does not have it; tests that need it skip with a clear reason instead of failing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    env = os.environ.get("FHIRLEAD_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def ecqm_dir() -> Path | None:
    path = shared_data_dir() / "ecqm-2025"
    return path if path.is_dir() else None


def require_ecqm() -> Path:
    path = ecqm_dir()
    if path is None:
        pytest.skip(
            f"eCQM test data not found at {shared_data_dir() / 'ecqm-2025'} "
            "(set FHIRLEAD_SHARED_DATA to the shared data folder)"
        )
    return path
