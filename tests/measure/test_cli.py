"""The `fhirlead measure evaluate` command-line contract."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from fhirlead.measure import cli
from tests.measure.synthetic import measure_bundle, patients


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fhirlead")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.run(args)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {"bundle": tmp_path / "measure.json"}
    out["bundle"].write_bytes(orjson.dumps(measure_bundle("proportion")))
    for i, doc in enumerate(patients()):
        out[f"p{i + 1}"] = tmp_path / f"p{i + 1}.json"
        out[f"p{i + 1}"].write_bytes(orjson.dumps(doc))
    return out


PERIOD = ["--period-start", "2026-01-01", "--period-end", "2026-12-31"]


def test_one_subject_prints_the_individual_report(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(
            "measure",
            "evaluate",
            "--measure-bundle",
            str(files["bundle"]),
            "--data",
            str(files["p2"]),
            *PERIOD,
        )
        == 0
    )
    report = orjson.loads(capsys.readouterr().out)
    assert report["resourceType"] == "MeasureReport" and report["type"] == "individual"
    assert report["subject"]["reference"] == "Patient/p2"


def test_several_subjects_print_the_summary_report(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(
            "measure",
            "evaluate",
            "--measure-bundle",
            str(files["bundle"]),
            "--data",
            str(files["p1"]),
            "--data",
            str(files["p2"]),
            *PERIOD,
        )
        == 0
    )
    report = orjson.loads(capsys.readouterr().out)
    assert report["type"] == "summary"
    assert report["group"][0]["population"][0]["count"] == 2


def test_missing_file_is_a_clear_error(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            "measure",
            "evaluate",
            "--measure-bundle",
            "/no/such/file.json",
            "--data",
            str(files["p1"]),
            *PERIOD,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err


def test_not_a_measure_bundle(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            "measure", "evaluate", "--measure-bundle", str(files["p1"]), "--data", str(files["p1"]), *PERIOD
        )
        == 2
    )
    assert "no Measure" in capsys.readouterr().err


def test_invalid_json_and_missing_patient(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert (
        run_cli(
            "measure", "evaluate", "--measure-bundle", str(files["bundle"]), "--data", str(broken), *PERIOD
        )
        == 2
    )
    assert "not valid JSON" in capsys.readouterr().err
    assert (
        run_cli(
            "measure",
            "evaluate",
            "--measure-bundle",
            str(files["bundle"]),
            "--data",
            str(files["bundle"]),
            *PERIOD,
        )
        == 2
    )
    assert "no Patient" in capsys.readouterr().err


def test_bad_period(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(
            "measure",
            "evaluate",
            "--measure-bundle",
            str(files["bundle"]),
            "--data",
            str(files["p1"]),
            "--period-start",
            "2026-13-01",
            "--period-end",
            "2026-12-31",
        )
        == 2
    )
    assert "measurement period" in capsys.readouterr().err
