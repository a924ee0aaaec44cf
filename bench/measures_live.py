"""Quality-measure evaluation over the live server: `$evaluate-measure` and `$care-gaps` on a SQLite store.

    .venv/bin/python bench/measures_live.py [--patients 10000] [--panel 2000] [--keep DIR] [--data DIR]

1. Generates --patients synthetic patients by cloning the 290 published test patients of the five eCQMs
   (../shared/data/ecqm-2025/<Measure>/tests) in turn, with new ids: every resource id and every reference
   to it is rewritten (`<old id>-b<round>`); references to resources the test bundle does not hold (the
   published `Practitioner/example`, ...) stay as they are. The first --panel patients get
   `generalPractitioner` Practitioner/bench-pcp; a Group bench-panel lists the same patients. Written as
   NDJSON and loaded with the five measure bundles by `fhirlead load` into a fresh SQLite store (timed).
2. Each measure's expected population counts: the in-memory engine evaluates the 290 templates once per
   measure; a clone counts as its template (only ids differ), so the live counts must equal these sums.
3. Three runs, each against a freshly started `fhirlead serve` (uvicorn on loopback, system/*.rs token),
   each first evaluating one patient per measure so the measures are compiled (that time is shown apart):
   - panel: `Measure/<id>/$evaluate-measure?periodStart=2026-01-01&periodEnd=2026-12-31&subject=Group/
     bench-panel` for each measure (--panel patients, summary report);
   - all: the same with no subject (every patient: --patients);
   - care-gaps: `Measure/$care-gaps` for practitioner=Practitioner/bench-pcp (the panel, found through
     Patient.generalPractitioner), all four statuses, `measureId` the five measures.
   Each request is timed end to end (client side, JSON parsed); ms per patient per measure is its time over
   patients (times measures for care-gaps). The server process's memory (/proc/<pid>/status, else psutil)
   is sampled every 20 ms during each request: VmRSS, and RssAnon, the heap (VmRSS also counts the pages
   of the database file SQLite maps: up to 1 GiB, `PRAGMA mmap_size`). The heap's peak above what it was
   after compiling, panel against all, shows whether evaluation memory grows with the population.
The issue's target: under 2 ms per patient per measure end to end; memory that does not grow with the
population. The client shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_token import bench_token
from rest import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhirlead.measure import MeasureBundle, MeasureEvaluator, measurement_period, subjects_from_documents
from fhirlead.measure.gaps import gap_status

DEFAULT_DATA = Path(os.environ.get("FHIRLEAD_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared"
                                   / "data")) / "ecqm-2025"
PERIOD = ("2026-01-01", "2026-12-31")
PCP = "bench-pcp"
PANEL = "bench-panel"
STATUSES = ("open-gap", "closed-gap", "prospective-gap", "not-applicable")
SAMPLE_SECONDS = 0.02
Resource = dict[str, Any]


@dataclass
class Templates:
    """The published test patients (each: Patient first, then their resources) and the measures."""

    measure_ids: list[str]
    bundles: list[Path]
    patients: list[list[Resource]]
    urls: dict[str, str] = field(default_factory=dict)  # Measure.url -> id
    expected: dict[str, list[list[dict[int, int]]]] = field(default_factory=dict)  # measure -> template -> counts
    gaps: dict[str, list[str]] = field(default_factory=dict)  # measure -> template -> gap status (today)


def read_templates(data: Path) -> Templates:
    measure_dirs = sorted(p for p in data.iterdir() if (p / "measure-bundle.json").is_file())
    measure_ids, patients, urls = [], [], {}
    for folder in measure_dirs:
        measure = orjson.loads((folder / "measure-bundle.json").read_bytes())["entry"][0]["resource"]
        measure_ids.append(measure["id"])
        urls[measure["url"]] = measure["id"]
        for path in sorted((folder / "tests").glob("*.json")):
            if not path.name.endswith(".expected.json"):
                patients.append([e["resource"] for e in orjson.loads(path.read_bytes())["entry"]])
    return Templates(measure_ids, [d / "measure-bundle.json" for d in measure_dirs], patients, urls)


def expected_counts(templates: Templates) -> None:
    """Per measure and template, the population counts per group (index of the population: count) and
    the care-gap status, from the in-memory engine (no profile check, as the live path reads the store)."""
    period = measurement_period(*PERIOD)
    today = datetime.now(UTC).date().isoformat()
    documents = [{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
                 for resources in templates.patients]
    subjects = subjects_from_documents(documents, require_profile=False)
    for measure_id, path in zip(templates.measure_ids, templates.bundles, strict=True):
        evaluator = MeasureEvaluator(MeasureBundle.from_json(orjson.loads(path.read_bytes())))
        results = evaluator.evaluate(subjects, period)
        templates.expected[measure_id] = [
            [{i: len(members) for i, members in group.members.items()} for group in result.groups]
            for result in results]
        groups = evaluator.definition.groups
        templates.gaps[measure_id] = [worst({gap_status(g, r.groups[i], today) for i, g in enumerate(groups)})
                                      for r in results]


def worst(found: set[str]) -> str:
    """A measure's gap status from its groups' (as operations/care_gaps.py: open, prospective, closed)."""
    return next((s for s in ("open-gap", "prospective-gap", "closed-gap") if s in found), "not-applicable")


def expected_total(templates: Templates, measure_id: str, patients: int) -> list[dict[int, int]]:
    per_template = templates.expected[measure_id]
    total: list[dict[int, int]] = [{} for _ in per_template[0]]
    for n in range(patients):
        for gi, counts in enumerate(per_template[n % len(per_template)]):
            for i, count in counts.items():
                total[gi][i] = total[gi].get(i, 0) + count
    return total


def clone(resources: list[Resource], suffix: str) -> list[Resource]:
    """The resources with new ids, every reference to them rewritten."""
    renamed = {f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{r['id']}-{suffix}" for r in resources}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items()}
            reference = node.get("reference")
            if isinstance(reference, str) and reference in renamed:
                out["reference"] = renamed[reference]
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    copies = [rewrite(r) for r in resources]
    for copy in copies:
        copy["id"] = f"{copy['id']}-{suffix}"
    return copies


def generate(templates: Templates, patients: int, panel: int, folder: Path) -> tuple[list[Path], int, list[str]]:
    """NDJSON files of the synthetic patients (plus the practitioner and the panel Group); the number of
    resources written; the patient ids in order."""
    ids: list[str] = []
    written = 0
    data_file = folder / "patients.ndjson"
    with data_file.open("wb") as out:
        for n in range(patients):
            template = templates.patients[n % len(templates.patients)]
            resources = clone(template, f"b{n // len(templates.patients)}")
            patient = resources[0]
            assert patient["resourceType"] == "Patient"
            if n < panel:
                patient["generalPractitioner"] = [{"reference": f"Practitioner/{PCP}"}]
            ids.append(patient["id"])
            for resource in resources:
                out.write(orjson.dumps(resource) + b"\n")
            written += len(resources)
    extra = folder / "panel.ndjson"
    practitioner = {"resourceType": "Practitioner", "id": PCP, "name": [{"family": "Bench", "given": ["Pat"]}]}
    group = {"resourceType": "Group", "id": PANEL, "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{id_}"}} for id_ in ids[:panel]]}
    extra.write_bytes(orjson.dumps(practitioner) + b"\n" + orjson.dumps(group) + b"\n")
    return [extra, data_file], written + 2, ids


class RssSampler:
    """Samples a process's memory in a thread: resident set (VmRSS) and its anonymous part (RssAnon: the
    heap; VmRSS also counts the pages of the database file SQLite reads through mmap). MB, peaks since the
    last `reset()`. /proc where there is one, else psutil (heap: rss - shared)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.highest = (0, 0)
        self.stopped = threading.Event()
        self.process: Any = None
        if not Path(f"/proc/{pid}/status").exists():
            import psutil  # type: ignore[import-not-found]

            self.process = psutil.Process(pid)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def now(self) -> tuple[int, int]:
        """Bytes resident now, all and anonymous ((0, 0) when the process is gone)."""
        try:
            if self.process is not None:
                info = self.process.memory_info()
                return int(info.rss), int(info.rss - getattr(info, "shared", 0))
            found: dict[str, int] = {}
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    name, _, value = line.partition(":")
                    if name in ("VmRSS", "RssAnon"):
                        found[name] = int(value.split()[0]) * 1024
            return found.get("VmRSS", 0), found.get("RssAnon", found.get("VmRSS", 0))
        except (OSError, ValueError, AttributeError):
            return 0, 0

    def _run(self) -> None:
        while not self.stopped.wait(SAMPLE_SECONDS):
            self._note(self.now())

    def _note(self, sample: tuple[int, int]) -> None:
        self.highest = (max(self.highest[0], sample[0]), max(self.highest[1], sample[1]))

    def reset(self) -> None:
        self.highest = self.now()

    def current(self) -> tuple[float, float]:
        rss, anon = self.now()
        return rss / 2**20, anon / 2**20

    def peak(self) -> tuple[float, float]:
        self._note(self.now())
        return self.highest[0] / 2**20, self.highest[1] / 2**20

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


@dataclass
class Live:
    root: str
    store: str
    rss: RssSampler

    def get(self, url: str, params: list[tuple[str, str]]) -> tuple[float, Any, int]:
        """Seconds for the request (with reading and parsing the answer), the parsed answer, its size."""
        token = bench_token(self.store, self.root, "system/*.rs")  # fresh per request: runs can outlast one
        with httpx.Client(base_url=f"{self.root}/fhir/", timeout=7200,
                          headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}) as client:
            started = time.perf_counter()
            answer = client.get(url, params=params)
            body = orjson.loads(answer.content) if answer.content else None
            took = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"GET {url} {params} -> {answer.status_code}: {answer.text[:1000]}")
        return took, body, len(answer.content)


@contextmanager
def serving(store: str) -> Iterator[Live]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store", store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "FHIRLEAD_LOG_LEVEL": "warning"})
    root = f"http://127.0.0.1:{port}"
    rss = RssSampler(server.pid)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{root}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")
        yield Live(root, store, rss)
    finally:
        rss.stop()
        server.terminate()
        server.wait()


def compile_all(live: Live, templates: Templates, patient: str) -> float:
    """Evaluates one patient per measure, so every measure is compiled and cached; seconds taken."""
    started = time.perf_counter()
    for measure_id in templates.measure_ids:
        live.get(f"Measure/{measure_id}/$evaluate-measure",
                 [("periodStart", PERIOD[0]), ("periodEnd", PERIOD[1]), ("subject", f"Patient/{patient}")])
    return time.perf_counter() - started


def counts_of(report: Resource) -> list[dict[int, int]]:
    return [{i: p.get("count", 0) for i, p in enumerate(g.get("population") or ())} for g in report.get("group") or ()]


def describe(report: Resource) -> str:
    parts = []
    for group in report.get("group") or ():
        pops = " ".join(f"{p['code']['coding'][0]['code']}={p.get('count', 0)}" for p in group.get("population") or ())
        score = (group.get("measureScore") or {}).get("value")
        parts.append(pops + (f" score={score:.3f}" if isinstance(score, float) else ""))
    return " | ".join(parts)


def memory(base: tuple[float, float], peak: tuple[float, float], after: tuple[float, float]) -> str:
    return (f"{peak[0]:>8.0f} {peak[1]:>8.0f} {peak[1] - base[1]:>+7.0f} {after[1] - base[1]:>+7.0f}")


MEMORY_HEADER = f"{'RSS MB':>8} {'heap MB':>8} {'peak':>7} {'after':>7}"


def population_run(live: Live, templates: Templates, label: str, subject: str | None, patients: int,
                   first: str) -> list[str]:
    """$evaluate-measure per measure for `subject` (None: everyone); the count mismatches found."""
    compiled = compile_all(live, templates, first)
    base = live.rss.current()
    print(f"\n{label}: {patients:,} patients; measures compiled in {compiled:.1f} s (one patient each); "
          f"server RSS {base[0]:.0f} MB, heap {base[1]:.0f} MB")
    print(f"  {'measure':<44} {'seconds':>8} {'ms/pt/measure':>14} {MEMORY_HEADER}  populations")
    problems, total, peak = [], 0.0, (0.0, 0.0)
    for measure_id in templates.measure_ids:
        params = [("periodStart", PERIOD[0]), ("periodEnd", PERIOD[1])] + ([("subject", subject)] if subject else [])
        live.rss.reset()
        took, report, _size = live.get(f"Measure/{measure_id}/$evaluate-measure", params)
        top = live.rss.peak()
        total, peak = total + took, (max(peak[0], top[0]), max(peak[1], top[1]))
        print(f"  {measure_id:<44} {took:>8.2f} {took / patients * 1000:>14.3f} "
              f"{memory(base, top, live.rss.current())}  {describe(report)}")
        expected = expected_total(templates, measure_id, patients)
        if counts_of(report) != expected:
            problems.append(f"{label} {measure_id}: counts {counts_of(report)}, expected {expected}")
    print(f"  {'five measures':<44} {total:>8.2f} {total / patients / 5 * 1000:>14.3f} "
          f"{memory(base, peak, live.rss.current())}")
    print("  (RSS and heap: peaks during the request; peak/after: heap above what it was after compiling, at the "
          "peak and after the request)")
    return problems


def care_gaps_run(live: Live, templates: Templates, patients: int, first: str) -> list[str]:
    """$care-gaps for the practitioner's panel; the mismatches with the expected gap statuses."""
    compiled = compile_all(live, templates, first)
    base = live.rss.current()
    params = [("periodStart", PERIOD[0]), ("periodEnd", PERIOD[1]), ("practitioner", f"Practitioner/{PCP}")]
    params += [("status", s) for s in STATUSES] + [("measureId", m) for m in templates.measure_ids]
    live.rss.reset()
    took, answer, size = live.get("Measure/$care-gaps", params)
    top = live.rss.peak()
    documents = [p["resource"] for p in answer.get("parameter") or () if p.get("name") == "return"]
    sections = sum(len(e["resource"].get("section") or ()) for d in documents for e in d.get("entry") or ()
                   if e["resource"].get("resourceType") == "Composition")
    found = gap_tally(templates, documents)
    per = took / (patients * len(templates.measure_ids)) * 1000
    print(f"\ncare-gaps: practitioner with {patients:,} patients x {len(templates.measure_ids)} measures "
          f"(compiled in {compiled:.1f} s); server RSS {base[0]:.0f} MB, heap {base[1]:.0f} MB")
    print(f"  {took:.2f} s, {per:.3f} ms per patient per measure; {len(documents):,} documents "
          f"({sections:,} measure sections), answer {size / 2**20:.1f} MB")
    print(f"  memory: {MEMORY_HEADER}")
    print(f"          {memory(base, top, live.rss.current())}")
    problems = []
    for measure_id in templates.measure_ids:
        per_template = templates.gaps[measure_id]
        expected = Counter(per_template[n % len(per_template)] for n in range(patients))
        print(f"  {measure_id:<44} " + ", ".join(f"{status} {found[measure_id][status]:,}" for status in STATUSES))
        if found[measure_id] != expected:
            problems.append(f"care-gaps {measure_id}: {dict(found[measure_id])}, expected {dict(expected)}")
    return problems


def gap_tally(templates: Templates, documents: list[Resource]) -> dict[str, Counter[str]]:
    """Per measure, how many patients have which gap status (DetectedIssue -> its MeasureReport's measure)."""
    found: dict[str, Counter[str]] = {m: Counter() for m in templates.measure_ids}
    for document in documents:
        resources = [e["resource"] for e in document.get("entry") or ()]
        measures = {f"MeasureReport/{r['id']}": templates.urls[r["measure"].split("|")[0]]
                    for r in resources if r["resourceType"] == "MeasureReport"}
        for issue in (r for r in resources if r["resourceType"] == "DetectedIssue"):
            status = issue["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
            found[measures[issue["evidence"][0]["detail"][0]["reference"]]][status] += 1
    return found


def load(files: list[Path], store: str) -> None:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fhirlead.cli", "load", "--store", store, *map(str, files)],
                          capture_output=True, text=True)
    took = time.perf_counter() - started
    summary = [line for line in done.stderr.splitlines() if line.startswith(("loaded", "FAILED"))]
    if done.returncode != 0:
        raise SystemExit(f"fhirlead load failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"load: {took:.1f} s ({'; '.join(summary)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=10_000, help="synthetic patients (default 10,000)")
    parser.add_argument("--panel", type=int, default=2_000, help="patients of Practitioner/bench-pcp (default 2,000)")
    parser.add_argument("--keep", type=Path, help="keep the database (and NDJSON) in this folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the ecqm-2025 folder")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no eCQM data at {args.data}", file=sys.stderr)
        return 2
    panel = min(args.panel, args.patients)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if (args.keep / "measures.db").exists():
            print(f"{args.keep / 'measures.db'} exists: give an empty folder", file=sys.stderr)
            return 2
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fhirlead-measures-live-"))
    store = f"sqlite:///{folder / 'measures.db'}"
    problems: list[str] = []
    try:
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; SQLite store, live server")
        templates = read_templates(args.data)
        started = time.perf_counter()
        files, resources, ids = generate(templates, args.patients, panel, folder)
        print(f"generated {args.patients:,} patients from {len(templates.patients)} templates, {resources:,} "
              f"resources, in {time.perf_counter() - started:.1f} s")
        load(templates.bundles + files, store)
        started = time.perf_counter()
        expected_counts(templates)
        took = time.perf_counter() - started
        print(f"expected counts (in-memory engine, 290 templates x 5 measures) in {took:.1f} s")
        with serving(store) as live:
            problems += population_run(live, templates, f"panel (subject=Group/{PANEL})", f"Group/{PANEL}",
                                       panel, ids[0])
        with serving(store) as live:
            problems += population_run(live, templates, "all (no subject)", None, args.patients, ids[0])
        with serving(store) as live:
            problems += care_gaps_run(live, templates, panel, ids[0])
        if args.keep:
            print(f"\ndatabase kept: {folder / 'measures.db'}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    for problem in problems:
        print("MISMATCH " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
