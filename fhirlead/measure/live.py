"""Measure evaluation over the live record: patients from the store, a batch at a time.

Each batch's data is read with a few indexed searches (`store_data.StoreData`), then the batch is
evaluated in a worker thread, so a population evaluation never holds the event loop for more than a
search and keeps only the slim per-patient results (population membership, strata, supplemental
values), whatever the population's size. `admit` lets the caller's access token decide which resources
the evaluation may see (DESIGN §5): a measure never counts what the caller could not read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any

from fhirlead.cql.errors import CqlError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node
from fhirlead.cql.retrieve import InMemoryDataSource
from fhirlead.errors import FhirError, Issue, log_unexpected
from fhirlead.measure.evaluate import MeasureEvaluator, SubjectResult
from fhirlead.measure.report import codeable_concept
from fhirlead.measure.store_data import BATCH, StoreData, plan
from fhirlead.measure.subjects import Subject
from fhirlead.storage.port import Store

log = logging.getLogger(__name__)
NOTHING = InMemoryDataSource(())


def store_data(store: Store, search: Any, evaluators: Sequence[MeasureEvaluator],
               admit: Callable[[dict[str, Any]], bool] | None = None) -> StoreData:
    """What a batch of patients needs for all of `evaluators` (several measures share one read)."""
    requirements = {r for evaluator in evaluators for r in evaluator.engine.requirements}
    return StoreData(store, plan(requirements, search), admit)


async def evaluate(data: StoreData, evaluators: Sequence[MeasureEvaluator], patient_ids: Sequence[str],
                   period: Interval, *, keep_evaluated: bool = False) -> list[list[SubjectResult]]:
    """Per evaluator, one result per patient that exists (in `patient_ids` order, unknown ids skipped).
    `keep_evaluated` keeps each result's evaluated resources (for individual reports)."""
    out: list[list[SubjectResult]] = [[] for _ in evaluators]
    async for batch in evaluate_batches(data, evaluators, patient_ids, period, keep_evaluated=keep_evaluated):
        for mine, found in zip(out, batch, strict=True):
            mine += found
    return out


async def evaluate_batches(data: StoreData, evaluators: Sequence[MeasureEvaluator], patient_ids: Sequence[str],
                           period: Interval, *, keep_evaluated: bool = False
                           ) -> AsyncIterator[list[list[SubjectResult]]]:
    """`evaluate`, a batch of patients at a time: a caller that turns each batch into its answer (gaps
    documents) holds one batch's evaluated resources at most."""
    for start in range(0, len(patient_ids), BATCH):
        batch = patient_ids[start:start + BATCH]
        sources = await data.load(batch)
        subjects = [Subject(id_, source.patient or {}, source) for id_ in batch if (source := sources.get(id_))]
        yield await asyncio.to_thread(_evaluate_batch, evaluators, subjects, period, keep_evaluated)


def _evaluate_batch(evaluators: Sequence[MeasureEvaluator], subjects: list[Subject], period: Interval,
                    keep_evaluated: bool) -> list[list[SubjectResult]]:
    out = []
    for evaluator in evaluators:
        found = []
        for subject in subjects:
            try:
                result = evaluator.evaluate_subject(subject, period)
            except CqlError as error:
                raise FhirError(422, [Issue("processing", f"evaluating {evaluator.definition.url} for "
                                                          f"{subject.reference} failed: {error}")]) from None
            except Exception as error:  # the engine tripped on this content or data: said, logged, not a 500
                log_unexpected(log, error, f"evaluating {evaluator.definition.url}")
                raise FhirError(422, [Issue("processing", f"evaluating {evaluator.definition.url} for "
                                                          f"{subject.reference} failed in the engine "
                                                          f"({type(error).__name__}); this has been logged")]) from None
            slim = Subject(subject.id, subject.patient if keep_evaluated else {}, NOTHING)
            found.append(replace(result, subject=slim, values={}, supplemental=_settled(result.supplemental),
                                 evaluated=result.evaluated if keep_evaluated else {}))
        out.append(found)
    return out


def _settled(supplemental: dict[int, Any]) -> dict[int, Any]:
    """Supplemental-data values as the CodeableConcepts the report will show, wrapped so the report takes
    them as they are: a CQL value can hold on to parts of the patient's parsed resources, which a
    population's results must not keep alive."""
    return {i: value if value is None or value == [] else Node("CodeableConcept", codeable_concept(value))
            for i, value in supplemental.items()}
