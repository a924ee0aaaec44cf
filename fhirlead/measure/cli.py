"""`fhirlead measure evaluate`: evaluate a measure bundle against patient data, print a MeasureReport.

    fhirlead measure evaluate --measure-bundle M.json --data P.json [--data ...] \\
        --period-start 2026-01-01 --period-end 2026-12-31

One subject prints the individual report, several print the summary report (stdout, JSON). Bad input
gives a one-line message on stderr and exit status 2; an evaluation error exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from fhirlead.cql.errors import CqlError
from fhirlead.measure.bundle import MeasureBundle, MeasureBundleError
from fhirlead.measure.definition import MeasureDefinitionError
from fhirlead.measure.evaluate import MeasureEvaluator, measurement_period
from fhirlead.measure.report import build_report
from fhirlead.measure.subjects import subjects_from_documents


class InputError(Exception):
    """Bad command-line input (missing file, invalid JSON, not a measure bundle...)."""


def register(subparsers: Any) -> None:
    measure = subparsers.add_parser("measure", help="evaluate quality measures (CQL/ELM)")
    actions = measure.add_subparsers(dest="measure_command", required=True)
    ev = actions.add_parser("evaluate", help="evaluate a measure bundle and print a MeasureReport")
    ev.add_argument(
        "--measure-bundle", required=True, type=Path, help="Bundle with the Measure, Libraries, ValueSets"
    )
    ev.add_argument(
        "--data",
        required=True,
        action="append",
        type=Path,
        help="patient data: a Bundle (or resource) file; repeat for several",
    )
    ev.add_argument("--period-start", required=True, help="measurement period start (YYYY-MM-DD or dateTime)")
    ev.add_argument("--period-end", required=True, help="measurement period end (YYYY-MM-DD or dateTime)")
    ev.add_argument("--summary", action="store_true", help="print a summary report even for one subject")
    ev.add_argument(
        "--ignore-profiles",
        action="store_true",
        help="retrieve resources by type even when they do not declare the profile in meta.profile",
    )
    ev.add_argument(
        "--timezone-offset",
        type=int,
        default=0,
        metavar="MINUTES",
        help="evaluation timezone offset in minutes (default 0, UTC)",
    )
    ev.set_defaults(run=run)


def _load_json(path: Path, what: str) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path}: is a directory") from None
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{what} {path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise InputError(f"{what} {path}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    try:
        bundle_json = _load_json(args.measure_bundle, "measure bundle")
        try:
            bundle = MeasureBundle.from_json(bundle_json)
        except MeasureBundleError as exc:
            raise InputError(f"measure bundle {args.measure_bundle}: {exc}") from None
        documents = []
        for path in args.data:
            doc = _load_json(path, "data")
            if not isinstance(doc, dict) or not doc.get("resourceType"):
                raise InputError(f"data {path}: not a FHIR resource or Bundle")
            documents.append(doc)
        subjects = subjects_from_documents(
            documents, require_profile=not args.ignore_profiles, tz=args.timezone_offset
        )
        if not subjects:
            raise InputError("no Patient resource found in the --data files")
        try:
            period = measurement_period(args.period_start, args.period_end, args.timezone_offset)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        try:
            evaluator = MeasureEvaluator(bundle, tz=args.timezone_offset)
        except (MeasureDefinitionError, CqlError) as exc:
            raise InputError(f"measure bundle {args.measure_bundle}: {exc}") from None
    except InputError as exc:
        print(f"fhirlead measure evaluate: {exc}", file=sys.stderr)
        return 2
    try:
        results = evaluator.evaluate(subjects, period)
        report = build_report(
            evaluator.definition,
            results,
            (args.period_start, args.period_end),
            individual=False if args.summary else None,
        )
    except (CqlError, MeasureDefinitionError) as exc:
        print(f"fhirlead measure evaluate: evaluation failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    return 0
