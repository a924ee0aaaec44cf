"""eCQM evaluation speed: the five published measures over their test patients, repeated.

    .venv/bin/python bench/measures.py [--patients 1000] [--data ../shared/data/ecqm-2025] [--slow-helpers]

Per measure it reports set-up time (parse the measure bundle, build value sets, compile the ELM) and
the time per patient after set-up. A patient's time covers everything the server would do per
patient: index the patient's resources (already parsed JSON) by type, evaluate every population,
stratifier and supplemental-data definition, and apply the population rules. The test patients are
cycled until at least --patients patients have been evaluated; each evaluation starts from a fresh
context, so nothing is cached between patients. Parsing the patients' JSON files is not timed (a
server reads them from its store); building MeasureReports is not included either.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhirlead.cql.datetime import clear_parse_cache
from fhirlead.measure import (
    MeasureBundle,
    MeasureEvaluator,
    measurement_period,
    subjects_from_documents,
)

DEFAULT_DATA = (
    Path(
        os.environ.get("FHIRLEAD_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    )
    / "ecqm-2025"
)


def bench_measure(measure_dir: Path, patients: int, native_helpers: bool) -> dict[str, float]:
    raw_bundle = (measure_dir / "measure-bundle.json").read_bytes()
    documents = [
        orjson.loads(p.read_bytes())
        for p in sorted((measure_dir / "tests").glob("*.json"))
        if not p.name.endswith(".expected.json")
    ]
    period = measurement_period("2026-01-01", "2026-12-31")

    t0 = time.perf_counter()
    bundle = MeasureBundle.from_json(orjson.loads(raw_bundle))
    evaluator = MeasureEvaluator(bundle, native_helpers=native_helpers)
    setup = time.perf_counter() - t0

    # Warm-up pass over each distinct patient (first-call effects such as value-set builds).
    for doc in documents:
        evaluator.evaluate(subjects_from_documents([doc]), period)

    rounds = -(-patients // len(documents))
    gc.collect()
    per_round = []
    results = []
    t_start = time.perf_counter()
    for _ in range(rounds):
        r0 = time.perf_counter()
        for doc in documents:
            # The repeated patients share date strings; drop the date-parse cache so every patient
            # pays for its own parsing, as distinct real patients would.
            clear_parse_cache()
            results = evaluator.evaluate(subjects_from_documents([doc]), period)
        per_round.append(time.perf_counter() - r0)
    total = time.perf_counter() - t_start
    evaluated = rounds * len(documents)

    del results
    return {
        "setup_s": setup,
        "patients": evaluated,
        "ms_per_patient": total / evaluated * 1000,
        "ms_per_patient_best_round": min(per_round) / len(documents) * 1000,
        "ms_per_patient_median_round": statistics.median(per_round) / len(documents) * 1000,
        "distinct_patients": len(documents),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--patients", type=int, default=1000, help="minimum patients per measure (default 1000)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the ecqm-2025 folder")
    parser.add_argument(
        "--slow-helpers",
        action="store_true",
        help="run FHIRHelpers as written in ELM (no native acceleration)",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no eCQM data at {args.data}", file=sys.stderr)
        return 2
    measure_dirs = sorted(p for p in args.data.iterdir() if (p / "measure-bundle.json").is_file())
    print(f"{'measure':<48} {'set-up s':>9} {'patients':>9} {'ms/patient':>11} {'best':>7} {'median':>7}")
    for d in measure_dirs:
        r = bench_measure(d, args.patients, native_helpers=not args.slow_helpers)
        print(
            f"{d.name:<48} {r['setup_s']:>9.3f} {r['patients']:>9d} {r['ms_per_patient']:>11.3f} "
            f"{r['ms_per_patient_best_round']:>7.3f} {r['ms_per_patient_median_round']:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
