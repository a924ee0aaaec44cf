"""Measure evaluation: FHIR Measures (CQL/ELM content) evaluated per patient into MeasureReports.

bundle = MeasureBundle.from_json(measure_bundle_json)
evaluator = MeasureEvaluator(bundle)
period = measurement_period("2026-01-01", "2026-12-31")
results = evaluator.evaluate(subjects_from_documents(patient_bundles), period)
report = build_report(evaluator.definition, results, ("2026-01-01", "2026-12-31"))
"""

from fhirlead.measure.bundle import MeasureBundle, MeasureBundleError
from fhirlead.measure.evaluate import MeasureEvaluator, SubjectResult, measurement_period
from fhirlead.measure.report import build_report
from fhirlead.measure.subjects import Subject, subjects_from_documents

__all__ = [
    "MeasureBundle",
    "MeasureBundleError",
    "MeasureEvaluator",
    "Subject",
    "SubjectResult",
    "build_report",
    "measurement_period",
    "subjects_from_documents",
]
