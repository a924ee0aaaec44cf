"""The `fhirlead` command line: one sub-command per job (serve, load, copy, measure).

Each sub-command lives in the module that owns the job and registers itself here through a
`register(subparsers)` function, so this file stays a table of contents.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "fhirlead.serve",
    "fhirlead.load",
    "fhirlead.copy",
    "fhirlead.measure.cli",
    "fhirlead.auth.cli",
    "fhirlead.app.assets",
    "fhirlead.bulk.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhirlead", description="FHIR R4 server for LEAD organisations")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
