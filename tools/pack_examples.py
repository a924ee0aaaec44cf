"""Pack the 728 official FHIR R4 (4.0.1) example resources into one test-data file.

    python tools/pack_examples.py EXAMPLES_PACKAGE_DIR CORE_PACKAGE_DIR

EXAMPLES_PACKAGE_DIR is the `package/` folder of the npm package `hl7.fhir.r4.examples` 4.0.1 (CC0);
CORE_PACKAGE_DIR that of `hl7.fhir.r4.core` 4.0.1. The examples are the files of the first that the
second does not also ship (the core package carries the conformance resources). Output:
`tests/data/r4-examples.ndjson.gz`, one example a line, as `{"file": name, "resource": {...}}`.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

from fhirlead import fhirjson  # keeps each decimal's digits (1.0e0 stays 1.0e0)

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "r4-examples.ndjson.gz"


def main(examples_dir: str, core_dir: str) -> None:
    core = {path.name for path in Path(core_dir).iterdir()}
    names = sorted(p.name for p in Path(examples_dir).iterdir() if p.suffix == ".json" and p.name not in core)
    with gzip.open(OUT, "wb", compresslevel=9) as out:
        for name in names:
            resource = fhirjson.loads((Path(examples_dir) / name).read_bytes().removeprefix(b"\xef\xbb\xbf"))
            out.write(fhirjson.dumps({"file": name, "resource": resource}) + b"\n")
    print(f"packed {len(names)} examples into {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
