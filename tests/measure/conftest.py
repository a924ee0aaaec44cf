"""Fixtures for measure tests: compiled evaluators per published measure (compiled once per session)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import orjson
import pytest

from fhirlead.measure import MeasureBundle, MeasureEvaluator
from tests.measure.shared_data import require_ecqm


@cache
def evaluator_for(measure_dir: Path) -> MeasureEvaluator:
    bundle = MeasureBundle.from_json(orjson.loads((measure_dir / "measure-bundle.json").read_bytes()))
    return MeasureEvaluator(bundle)


@pytest.fixture
def ecqm() -> Path:
    return require_ecqm()
