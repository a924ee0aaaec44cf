"""Run fhirlead's Validator on the HL7 reference validator's published test cases and compare.

    .venv/bin/python tools/reference_cases.py MIRROR [--case TEXT] [--show-agree] [--excluded] [--json OUT]

MIRROR is a copy of https://github.com/FHIR/fhir-test-cases (Apache License 2.0, see its LICENSE.txt;
copyright HL7 International and the contributors): either a git directory (bare, as the `fetch` tool
makes it, read at HEAD) or a work tree. Nothing of it is copied into this repository: every case,
supporting file and expected outcome is read from MIRROR when the script runs.

The cases are listed in `validator/manifest.json` ("test-cases"): `file` the instance, `version`
(`4.0` is R4), `supporting`/`profiles` the conformance resources to load first, `profile.source` a
profile to validate against in a second step (with its own `supporting`), and per validator the
expected outcome; `java` is the reference (Java) validator's: a file under `validator/outcomes/`
holding an OperationOutcome, or an inline `{"outcome": ...}` or `{"errorCount": n, "output": [...]}`.

Selected: R4 (4.0.x) cases about validating a FHIR resource (JSON, or XML converted with
tools/fhir_xml.py, since the server reads JSON only) that need nothing but the case's own
StructureDefinitions, ValueSets and CodeSystems, the R4 core and what profiles/ holds (US Core 6.1.0,
ATR). Left out, each with its reason: other FHIR versions, disabled cases (`use-test: false`), other
formats and modules (CDA, CDS Hooks, SMART Health Cards, logical models, matchetypes, JSON5,
signatures, cross-version, package versioning), cases needing IG packages or other options the Java
harness offers (reference fetching, advisors, best-practice as errors, security checks), and
QuestionnaireResponse/MeasureReport checks against their Questionnaire/Measure.

Each selected case runs once as the manifest's base step (claimed profiles in `meta.profile` are
checked when loaded) and once more per `profile` step (that profile asked for, as `$validate?profile=`
does), with `Validator.issues` as `$validate` without a mode calls it. Our errors (severity
error/fatal) are compared with the expected ones (error/fatal): by location where the expected outcome
gives locations, else by count. Locations are FHIRPath, normalised (Java's `/*Type/id*/` notes, slice
names and `[url=...]` filters dropped, `value.ofType(Quantity)` as `valueQuantity`, numeric indexes
kept); an expected issue is matched by one of ours at the same place or below it, and a cardinality or
slice error Java puts on the parent is placed by the path its message names. Verdicts: agree, miss (an
expected error we did not report), extra (an error of ours not expected), miss+extra, crash (our
validator raised: always a bug), skipped (tools/fhir_xml.py could not convert the XML: a converter
defect). Each disagreement gets a feature (cardinality, slicing, binding, ...) from the messages
involved, and hints where an expected error rests on something out of our reach (`tx-server`: the Java
validator got it from a terminology server; unknown extensions or profiles; checks Java makes on
conformance resources; `after our first failing layer`: our validator stops at the first failing
layer, docs/validation.md). Agreements by location whose counts differ are listed for a second look.

Harness details: a UTF-8 BOM is removed before parsing (the server's JSON reader refuses it, which RFC
8259 section 8.1 allows; each case notes it); tools/fhir_xml.py's output loses `"name": null` beside
`"_name"` (FHIR JSON leaves the value out) and an XML element repeated where its definition allows one
is reported as our error (JSON would repeat a property name, which the server refuses); a stale
outcome path in the manifest falls back to the file name the Java harness writes
(`outcomes/java/R4.<name>-base.json`). Our validator judges a reference's type from its URL, as the
Java validator does only with `assumeValidRestReferences`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhirlead import fhirjson
from fhirlead.errors import Issue
from fhirlead.terminology import Terminology, default_terminology
from fhirlead.validation import Validator
from fhirlead.validation.conformance import Conformance, default_conformance
from fhirlead.validation.profiles import Profiles

ROOT = Path(__file__).resolve().parents[1]
SERVER_EXTENSION = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-server"
FAILING = ("error", "fatal")
TERMINOLOGY_TYPES = ("ValueSet", "CodeSystem")
BOM = b"\xef\xbb\xbf"

# Modules (manifest "modules") about other formats or features than validating one FHIR resource.
OUT_OF_SCOPE_MODULES = {
    "cda": "CDA documents (logical model)",
    "cdshooks": "CDS Hooks JSON (logical model)",
    "shc": "SMART Health Cards",
    "logical": "logical models",
    "matchetype": "matchetype comparison, not validation",
    "json5": "JSON5 parsing",
    "dsig": "digital signatures",
    "xver": "cross-version extensions (R5 packages)",
    "package-versioning": "IG package version resolution",
    "versions": "IG package version resolution",
    "api": "validator API options",
    "scoring": "Java validator scoring",
}
# Options of the Java test harness (manifest "documentation") a case cannot be run without.
NEEDS_OPTION = {
    "packages": "needs IG packages this server does not hold",
    "logical": "logical model",
    "matchetype": "matchetype comparison",
    "supporting5": "needs R5 supporting definitions",
    "advisor": "Java validator advisor file (message filtering policy)",
    "bundle-param": "Java validator bundle-param option",
    "fetcher": "needs references resolved over the web (standalone fetcher)",
    "validateReference": "needs the referenced resources resolved and validated",
    "validateContains": "Java validator option on contained resources",
    "security-checks": "Java validator security-checks mode (policy)",
    "best-practice": "best-practice warnings as errors (Java policy)",
    "for-publication": "IG-publication checks (Java policy)",
    "ips": "IPS packages",
    "no-experimental-content": "Java validator option on experimental content",
    "r5-bundle-relative-reference-policy": "R5 bundle reference policy",
    "wrong-displays": "display-name checks (terminology server)",
    "sct": "SNOMED CT edition of a terminology server",
    "noHtmlInMarkdown": "Java validator option on HTML in markdown (policy)",
}
LEFT_OUT_TYPES = {
    "QuestionnaireResponse": "QuestionnaireResponse against its Questionnaire (Java validator feature; needs the "
                             "Questionnaire)",
    "MeasureReport": "MeasureReport against its Measure (Java validator feature; needs the Measure)",
}

# Feature of a message: the first pattern that matches (Java's wording, then ours).
FEATURES: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern, re.I)) for name, pattern in [
    ("format", r"Error parsing JSON|Unable to find resourceType|XML: ParseError|JSON: |not well-formed|json syntax"
               r"|unexpected character|Invalid entity"),
    ("unknown element", r"Unrecogni[sz]ed property|Unknown element|not an R4 element|Additional properties"
                        r"|Undefined element|property '\w+' is invalid"),
    ("binding", r"Wrong Display Name|Unknown code|value ?set|code ?system|None of the codings|No code provided"
                r"|System URI|binding|\bCoding\b"),
    ("narrative", r"xhtml|\bhtml\b|Hyperlink|txt-\d|\.div\b|markdown|language sections"),
    ("slicing", r"\bslic|discriminator"),
    ("invariant", r"Constraint failed|\binvariant|^\S*:? ?[a-z]{2,5}-\d{1,2}:"),
    ("cardinality", r"minimum required|max allowed|at least \d+ required|at most \d+ allowed|is required"),
    ("extension", r"extension"),
    ("bundle", r"fullUrl|Bundle entr|bundle|isn't reachable|link relationship|Search results"),
    ("fixed/pattern", r"fixed|pattern"),
    ("reference", r"reference|canonical|absolute|resolve|target"),
    ("primitive syntax", r"not a valid|invalid|timezone|less than|greater than|too long|longer than|shorter than"
                         r"|length|decimal|integer|date|base64|attachment|regex|whitespace|empty|null"),
    ("type", r"\btype\b|ofType|choice|\[x\]"),
    ("profile", r"profile"),
]]


def feature_of(message: str) -> str:
    for name, pattern in FEATURES:
        if pattern.search(message):
            return name
    return "other"


# Reading the mirror.


class Mirror:
    """Files of the fhir-test-cases repository at HEAD of a git directory, or in a work tree."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = path / "validator" / "manifest.json"
        self._batch: subprocess.Popen[bytes] | None = None
        if not self.tree.is_file():
            self._batch = subprocess.Popen(["git", f"--git-dir={path}", "cat-file", "--batch"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, relative: str) -> bytes | None:
        """The bytes of `relative` (a path inside the repository), or None when there is no such file."""
        if self._batch is None:
            target = self.path / relative
            return target.read_bytes() if target.is_file() else None
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(f"HEAD:{relative}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().split()
        if len(header) != 3:  # "<object> missing"
            return None
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after each object
        return data if header[1] == b"blob" else None

    def close(self) -> None:
        if self._batch is not None:
            self._batch.communicate()


# Loading resources.


class InputProblem(Exception):
    """The instance could not be read as FHIR JSON (a JSON syntax error, an XML element that is no R4
    element): what the server itself would refuse before validation."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.location = location


def _xml_converter() -> tuple[Callable[[bytes], dict[str, Any]], type[Exception]]:
    """tools/fhir_xml.py's `convert`, made to refuse what FHIR JSON cannot say: the converter keeps the
    last of two XML elements whose definition allows one (`<subject>` twice in a Composition), where
    the JSON equivalent repeats a property name, which the server refuses (fhirjson.DuplicateKey)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module = importlib.import_module("tools.fhir_xml")
    if not getattr(module, "_single_checked", False):
        put, fill = module._put, module._fill
        where: list[str] = []  # the element being filled, "Composition.section."

        def tracked_fill(target: dict[str, Any], node: Any, type_: str, path: str) -> None:
            where.append(f"{type_}.{path}")
            try:
                fill(target, node, type_, path)
            finally:
                where.pop()

        def single_put(target: dict[str, Any], name: str, value: Any, repeats: bool,
                       parallel_to: str | None = None) -> None:
            if not repeats and name in target:
                location = (where[-1] if where else "") + name
                raise InputProblem(f"XML: {location} appears more than once but allows one value (in JSON a "
                                   "repeated property name)", location)
            put(target, name, value, repeats, parallel_to)

        module._put, module._fill = single_put, tracked_fill
        module._single_checked = True
    return module.convert, module.ConversionError


class ConverterFailure(Exception):
    """tools/fhir_xml.py could not convert an XML file that is not wrong as FHIR (a defect of the
    converter, not of the validator): the run is skipped and listed."""


def _drop_nulls(value: Any) -> Any:
    """tools/fhir_xml.py writes `"active": null` beside `"_active": {...}` for a primitive that has
    extensions but no value (FHIR JSON leaves the property out; json.html#primitive): undo that, keeping
    the nulls that pad primitive arrays."""
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def load_resource(data: bytes, name: str, untrusted: bool = False) -> Any:
    """A JSON or XML file as FHIR JSON; InputProblem when it cannot be read as FHIR, ConverterFailure
    when tools/fhir_xml.py fails on it for a reason of its own."""
    if name.endswith(".xml"):
        convert, conversion_error = _xml_converter()
        try:
            return _drop_nulls(convert(data))
        except InputProblem:
            raise
        except conversion_error as error:
            found = re.match(r"(\S+) is not an R4 element", str(error))
            raise InputProblem(f"XML: {error}", found[1] if found else "") from None
        except Exception as error:  # contentReference elements, encodings expat lacks, ...
            raise ConverterFailure(f"{type(error).__name__}: {error}") from None
    if data.startswith(BOM):  # RFC 8259 §8.1 lets a parser ignore it; fhirjson refuses it (noted per case)
        data = data[len(BOM):]
    try:
        return fhirjson.loads_untrusted(data) if untrusted else fhirjson.loads(data)
    except fhirjson.JsonError as error:
        raise InputProblem(f"JSON: {error}") from None


def conformance_resources(resource: Any) -> Iterable[dict[str, Any]]:
    """The StructureDefinitions, ValueSets and CodeSystems in a supporting file (alone or in a Bundle)."""
    if not isinstance(resource, dict):
        return
    if resource.get("resourceType") == "Bundle":
        for entry in resource.get("entry") or ():
            if isinstance(entry, dict):
                yield from conformance_resources(entry.get("resource"))
    elif resource.get("resourceType") in ("StructureDefinition", *TERMINOLOGY_TYPES):
        yield resource


# Expectations.


@dataclass
class Expected:
    count: int
    issues: list[tuple[str, str, bool]]  # (location, message, from a terminology server)
    located: bool  # whether every error has a location to compare


def expectation(mirror: Mirror, java: Any, conventional: str = "") -> Expected | None:
    """The expected errors `java` (a manifest `java` entry) gives. Some manifest paths are stale
    (`java/R4.general.pat-fixed-date.json`) while the outcome sits under the name the Java harness
    writes (`java/R4.pat-fixed-date-base.json`): `conventional` is that name, tried second."""
    outcome: Any = None
    if isinstance(java, str):
        data = mirror.read(f"validator/outcomes/{java}")
        if data is None and conventional:
            data = mirror.read(f"validator/outcomes/{conventional}")
        outcome = json.loads(data) if data else None
    elif isinstance(java, dict):
        if isinstance(java.get("outcome"), dict):
            outcome = java["outcome"]
        elif "errorCount" in java:
            issues = []
            for line in java.get("output") or ():
                found = re.match(r"(ERROR|FATAL): ([^:]*): (.*)", line)
                if found:
                    issues.append((found[2], found[3], False))
            return Expected(int(java["errorCount"]), issues, len(issues) == int(java["errorCount"]))
    if not isinstance(outcome, dict):
        return None
    issues = []
    for issue in outcome.get("issue") or ():
        if issue.get("severity") not in FAILING:
            continue
        where = issue.get("expression") or issue.get("location") or [""]
        text = (issue.get("details") or {}).get("text") or issue.get("diagnostics") or ""
        server = any(ext.get("url") == SERVER_EXTENSION for ext in issue.get("extension") or ())
        issues.append((where[0], text, server))
    return Expected(len(issues), issues, all(location for location, _, _ in issues))


# Comparing locations.

_MESSAGE_PATH = re.compile(r"^(?:Slice ')?([A-Z][A-Za-z]*(?:\.[A-Za-z_][\w\[\]]*(?::[\w-]+)?)+)'?[:,]? ")


def normalise(location: str) -> str:
    """A FHIRPath location in one spelling: numeric indexes kept, Java's `/*Type/id*/` notes, slice
    names and `[url='...']` filters dropped, `value.ofType(Quantity)` as `valueQuantity`."""
    location = re.sub(r"/\*.*?\*/", "", location)  # Bundle.entry[0].resource/*Patient/1*/.name
    location = re.sub(r"\.resource\.ofType\(\w+\)", ".resource", location)
    location = re.sub(r"(\w+)\.ofType\((\w)(\w*)\)", lambda m: m[1] + m[2].upper() + m[3], location)
    location = re.sub(r"\[[^\]0-9][^\]]*\]", "", location)  # [url='...'] filters, [x]
    location = re.sub(r":[\w-]+", "", location)  # slice names: Bundle.entry:myslice
    location = re.sub(r"\.(where|resolve|extension)\(.*?\)", "", location)
    location = re.sub(r"(^|\.)_", r"\1", location)  # _valueInteger: the JSON companion of valueInteger
    return location.strip(". ")


def _segments(location: str) -> list[tuple[str, str | None]]:
    found = []
    for part in location.split(".") if location else ():
        named = re.fullmatch(r"(.*?)(?:\[(\d+)\])?", part)
        assert named is not None
        found.append((named[1], named[2]))
    return found


def _within(outer: str, inner: str) -> bool:
    """Whether `inner` is `outer` or below it; an index on one side and not the other is no difference
    (Java writes `[0]` where this server may not)."""
    a, b = _segments(outer), _segments(inner)
    if len(a) > len(b):
        return False
    return all(x[0] == y[0] and (x[1] is None or y[1] is None or x[1] == y[1]) for x, y in zip(a, b, strict=False))


def expected_location(location: str, message: str) -> str:
    """Where an expected issue is: the Java validator puts cardinality and slice errors on the parent
    (`Patient`, message `Patient.identifier: minimum required = 1`); the message's own path is closer."""
    place = normalise(location)
    found = _MESSAGE_PATH.match(message)
    if found:
        said = normalise(found[1])
        if said.startswith(place + ".") or (place and said.split(".")[0] == place):
            return said
        if place.endswith((".resource", ".contained")):  # Bundle.entry[0].resource, "Composition.subject: ..."
            return place + "." + said.split(".", 1)[1]
    return place


def _slice_named(message: str) -> str | None:
    """The slice an expected message is about (`Bundle.entry:Obs1: max allowed`, `Slice 'X.y:Obs2'`)."""
    found = _MESSAGE_PATH.match(message)
    named = re.search(r":([\w-]+)$", found[1]) if found else None
    return named[1] if named else None


def covers(expected: tuple[str, str], ours: tuple[str, str]) -> bool:
    """Whether an expected issue and one of ours, each (normalised location, message), name the same
    place, or one holds the other below the resource's root. An expected issue on the root matches ours
    when its message names our element (`The type of element valueString is not known`); one about a
    slice (`Bundle.entry:Obs1: max allowed = 1`) matches ours only when ours names that slice too."""
    place, message = expected
    ours, our_message = ours
    named = _slice_named(message)
    if named and f":{named}" not in our_message:
        return False
    if place == ours:
        return True
    if ".resource." in place and ours.split(".")[0] != place.split(".")[0]:  # ours names the entry's resource
        place = place.rsplit(".resource.", 1)[1]
        ours = ours.split(".", 1)[1] if "." in ours else ""
        return bool(ours) and (_within(place, ours) or _within(ours, place))
    if "." not in place and ours.startswith(place + "."):
        return re.sub(r"\[\d+\]", "", ours).rsplit(".", 1)[-1] in message
    # the same place, or ours below the expected one (Java reports on the element, this server on a
    # child: `Patient.extension[0]` / `Patient.extension[0].url`); never ours above it, which would let
    # one issue of ours on `Bundle.entry` answer for everything in every entry
    return "." in place and _within(place, ours)


# Hints: expected errors that rest on something this server does not do by design (a terminology
# server, packages, Java validator policy); the analysis decides, these only point.
HINTS: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(pattern)) for name, pattern in [
    ("display", r"Wrong Display Name"),
    ("unknown extension", r"could not be found so is not allowed here"),
    ("unknown profile", r"Unknown profile|could not be resolved|Unable to find a profile match|Profile reference"),
    ("bundle resolution", r"in the bundle|isn't reachable by traversing|not found within the bundle|Unable to resolve"),
    ("example URL", r"Example URLs are not allowed"),
]]
CONFORMANCE_TYPES = ("ValueSet", "CodeSystem", "StructureDefinition", "OperationDefinition", "ConceptMap",
                     "CapabilityStatement", "Questionnaire", "Measure", "ImplementationGuide")


def hints_of(location: str, message: str, server: bool) -> list[str]:
    found = ["tx-server"] if server else []
    found += [name for name, pattern in HINTS if pattern.search(message)]
    if (normalise(location).split(".")[0] in CONFORMANCE_TYPES and not found
            and not re.search(r"minimum required|max allowed|Constraint failed", message)):
        found.append("conformance-resource check")
    return found


# Running.


@dataclass
class Run:
    case: str
    step: str  # "base" or "profile"
    module: str
    expected: Expected
    ours: list[tuple[str, str]] = field(default_factory=list)  # (location, message) of our errors
    verdict: str = ""
    feature: str = ""
    hints: list[str] = field(default_factory=list)
    crash: str = ""
    notes: list[str] = field(default_factory=list)
    missed: list[tuple[str, str, bool]] = field(default_factory=list)
    surplus: list[tuple[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.case if self.step == "base" else f"{self.case} [profile]"


def build_validator(definitions: Sequence[dict[str, Any]]) -> Validator:
    """A Validator that also knows `definitions` (StructureDefinitions, ValueSets, CodeSystems) over
    the server's own (R4 core, profiles/)."""
    terminology: Terminology = default_terminology().overlay()
    for resource in definitions:
        if resource.get("resourceType") in TERMINOLOGY_TYPES:
            terminology.add(resource)
    structures = [resource for resource in definitions if resource.get("resourceType") == "StructureDefinition"]
    return Validator(Profiles(Conformance(structures, parent=default_conformance()), terminology))


def judge(run: Run) -> None:
    expected, ours = run.expected, run.ours
    if run.crash:
        run.verdict, run.feature = "crash", "crash"
        return
    if expected.located:
        places = [(expected_location(location, text), text) for location, text, _ in expected.issues]
        mine = [(normalise(location), text) for location, text in ours]
        run.missed = [issue for issue, place in zip(expected.issues, places, strict=True)
                      if not any(covers(place, location) for location in mine)]
        run.surplus = [issue for issue, location in zip(ours, mine, strict=True)
                       if not any(covers(place, location) for place in places)]
    else:  # counts only
        if len(ours) < expected.count:
            run.missed = expected.issues or [("", f"{expected.count - len(ours)} more error(s)", False)]
        elif len(ours) > expected.count:
            run.surplus = ours
    run.verdict = {(False, False): "agree", (True, False): "miss", (False, True): "extra",
                   (True, True): "miss+extra"}[(bool(run.missed), bool(run.surplus))]
    if run.verdict == "agree":
        texts = [text for _, text, _ in expected.issues] + [text for _, text in ours]
        run.feature = Counter(map(feature_of, texts)).most_common(1)[0][0] if texts else "valid"
        return
    texts = [text for _, text, _ in run.missed] or [text for _, text in run.surplus]
    run.feature = Counter(map(feature_of, texts)).most_common(1)[0][0]
    hinted = [hints_of(*issue) for issue in run.missed]
    run.hints = sorted({hint for hints in hinted for hint in hints})
    if run.missed and ours and not run.surplus:
        run.hints.append("after our first failing layer")  # ours are right; later checks did not run
    if run.missed and not run.surplus and all(hinted):
        run.hints.append("all missed hinted")


def execute(mirror: Mirror, case: dict[str, Any], step: str, expected: Expected, instance_data: bytes) -> Run:
    run = Run(case["name"], step, case.get("module") or "", expected)
    files = [*case.get("supporting", ()), *case.get("profiles", ())]
    asked: list[str] = []
    if step == "profile":
        profile = case["profile"]
        files += list(profile.get("supporting", ()))
        source = profile["source"]
        if mirror.read(f"validator/{source}") is not None:
            files.append(source)
        else:
            asked.append(source)
    definitions: list[dict[str, Any]] = []
    for name in dict.fromkeys(files):
        data = mirror.read(f"validator/{name}")
        if data is None:
            run.notes.append(f"supporting {name} not found")
            continue
        try:
            found = list(conformance_resources(load_resource(data, name)))
        except (InputProblem, ConverterFailure) as problem:
            run.notes.append(f"supporting {name} unreadable: {problem}")
            continue
        definitions += found
        if step == "profile" and name == case["profile"]["source"]:
            asked += [resource["url"] for resource in found
                      if resource.get("resourceType") == "StructureDefinition" and isinstance(resource.get("url"), str)]
    if instance_data.startswith(BOM):
        run.notes.append("UTF-8 BOM removed (the server's JSON reader refuses it)")
    try:
        resource = load_resource(instance_data, case["file"], untrusted=True)
    except InputProblem as problem:
        run.ours = [(problem.location, str(problem))]
        run.notes.append("refused before validation")
        judge(run)
        return run
    except ConverterFailure as failure:
        run.verdict, run.feature, run.crash = "skipped", "XML converter", str(failure)
        return run
    try:
        validator = build_validator(definitions)
        issues: list[Issue] = validator.issues(resource, profiles=asked) if isinstance(resource, dict) else \
            [Issue("structure", "not a JSON object")]
    except Exception:
        run.crash = "".join(traceback.format_exc().splitlines(keepends=True)[-6:])
        judge(run)
        return run
    run.ours = [(issue.expression[0] if issue.expression else "", issue.diagnostics)
                for issue in issues if issue.severity in FAILING]
    judge(run)
    return run


def exclusion(case: dict[str, Any], mirror: Mirror) -> str | None:
    """Why a case is left out, or None when it is selected."""
    version = str(case.get("version") or "5.0")
    if not version.startswith("4.0"):
        return f"FHIR version {version}"
    if case.get("use-test") is False:
        return "disabled in the manifest (use-test: false)"
    if not case["file"].endswith((".json", ".xml")):
        return "not a FHIR JSON or XML file"
    module = case.get("module") or ""
    if module in OUT_OF_SCOPE_MODULES:
        return f"module {module}: {OUT_OF_SCOPE_MODULES[module]}"
    if case["file"].startswith("signatures/"):
        return "digital signatures (Bundle.signature verification)"
    if module == "fmt" and case["file"].endswith(".xml"):
        return "module fmt: XML syntax (the server reads JSON only)"
    profile = case.get("profile") if isinstance(case.get("profile"), dict) else {}
    for key, why in NEEDS_OPTION.items():
        if key in case or key in profile:
            return why
    if "infoway-auth-required" in (case.get("tags") or ()):
        return "needs a licensed terminology server (Canada Health Infoway)"
    data = mirror.read(f"validator/{case['file']}")
    if data is None:
        return "instance file missing"
    kind = re.search(rb'"resourceType"\s*:\s*"(\w+)"|<(\w+)[^>]*xmlns="http://hl7.org/fhir"', data)
    kind_name = (kind[1] or kind[2]).decode() if kind else ""
    if kind_name in LEFT_OUT_TYPES:
        return LEFT_OUT_TYPES[kind_name]
    return None


def steps(case: dict[str, Any], mirror: Mirror) -> Iterable[tuple[str, Expected | None]]:
    stem = "java/R4." + case["name"].replace("/", "-")
    yield "base", expectation(mirror, case.get("java"), f"{stem}-base.json")
    if isinstance(case.get("profile"), dict):
        yield "profile", expectation(mirror, case["profile"].get("java"), f"{stem}-profile.json")


# Reporting.


def short(text: str, size: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[:size - 1] + "…"


def report(runs: list[Run], excluded: dict[str, list[str]], show_agree: bool, show_excluded: bool) -> None:
    verdicts = ["agree", "miss", "extra", "miss+extra", "crash", "skipped"]
    cases = {run.case for run in runs}
    print(f"Selected {len(cases)} cases, {len(runs)} runs (base step + profile steps).")
    totals = Counter(run.verdict for run in runs)
    print("Overall: " + ", ".join(f"{verdict} {totals[verdict]}" for verdict in verdicts))
    print()
    by_feature: dict[str, Counter[str]] = defaultdict(Counter)
    for run in runs:
        by_feature[run.feature][run.verdict] += 1
    width = max(len(name) for name in by_feature) + 2
    print("feature".ljust(width) + "".join(verdict.rjust(12) for verdict in verdicts) + "total".rjust(8))
    for name, counts in sorted(by_feature.items(), key=lambda item: -sum(item[1].values())):
        print(name.ljust(width) + "".join(str(counts[verdict]).rjust(12) for verdict in verdicts)
              + str(sum(counts.values())).rjust(8))
    print()
    crashes = [run for run in runs if run.verdict == "crash"]
    if crashes:
        print("Exceptions from our validator (bugs):")
        for run in crashes:
            print(f"- {run.label}:")
            print("    " + run.crash.rstrip().replace("\n", "\n    "))
        print()
    print("Disagreements:" if not show_agree else "All runs:")
    for feature_name in sorted(by_feature):
        shown = [run for run in runs if run.feature == feature_name and run.verdict != "crash"
                 and (show_agree or run.verdict != "agree")]
        if not shown:
            continue
        print(f"## {feature_name}")
        for run in sorted(shown, key=lambda item: item.label):
            hints = f" [{', '.join(run.hints)}]" if run.hints else ""
            notes = f" ({'; '.join(run.notes)})" if run.notes else ""
            print(f"- {run.label} ({run.module or '-'}): {run.verdict}{hints}: expected {run.expected.count}, "
                  f"ours {len(run.ours)}{notes}")
            for location, text, server in run.missed:
                hints = hints_of(location, text, server)
                print(f"    missed: {location or '-'}: {short(text)}" + (f" [{', '.join(hints)}]" if hints else ""))
            for location, text in run.surplus:
                print(f"    extra:  {location or '-'}: {short(text)}")
            if run.verdict == "skipped":
                print(f"    converter: {short(run.crash)}")
    loose = [run for run in runs if run.verdict == "agree" and run.ours and len(run.ours) != run.expected.count]
    if loose:
        print()
        print("Agreeing by location with another count (worth a look: the same place, maybe another reason):")
        for run in sorted(loose, key=lambda item: item.label):
            print(f"- {run.label}: expected {run.expected.count}, ours {len(run.ours)}")
            for location, text, _ in run.expected.issues[:4]:
                print(f"    expected: {location or '-'}: {short(text, 90)}")
            for location, text in run.ours[:4]:
                print(f"    ours:     {location or '-'}: {short(text, 90)}")
    print()
    print(f"Excluded: {sum(len(names) for names in excluded.values())} cases")
    for why, names in sorted(excluded.items(), key=lambda item: -len(item[1])):
        listed = f": {', '.join(sorted(names))}" if show_excluded else ""
        print(f"- {len(names)}: {why}{listed}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mirror", type=Path, help="fhir-test-cases: its git directory or a work tree")
    parser.add_argument("--case", help="only cases whose name contains this text")
    parser.add_argument("--show-agree", action="store_true", help="list agreeing runs too")
    parser.add_argument("--excluded", action="store_true", help="name every excluded case")
    parser.add_argument("--json", type=Path, help="also write every run as JSON here")
    args = parser.parse_args(argv)
    mirror = Mirror(args.mirror)
    manifest_data = mirror.read("validator/manifest.json")
    if manifest_data is None:
        parser.error(f"no validator/manifest.json in {args.mirror}")
    manifest = json.loads(manifest_data)
    runs: list[Run] = []
    excluded: dict[str, list[str]] = defaultdict(list)
    for case in manifest["test-cases"]:
        if args.case and args.case not in case["name"]:
            continue
        why = exclusion(case, mirror)
        if why is not None:
            excluded[why].append(case["name"])
            continue
        instance = mirror.read(f"validator/{case['file']}")
        assert instance is not None
        for step, expected in steps(case, mirror):
            if expected is None:
                excluded[f"no expected outcome for the {step} step"].append(case["name"])
                continue
            runs.append(execute(mirror, case, step, expected, instance))
    mirror.close()
    report(runs, excluded, args.show_agree, args.excluded)
    if args.json:
        args.json.write_text(json.dumps([{
            "case": run.case, "step": run.step, "module": run.module, "verdict": run.verdict,
            "feature": run.feature, "hints": run.hints, "notes": run.notes, "crash": run.crash,
            "expected": [list(issue) for issue in run.expected.issues], "expected_count": run.expected.count,
            "ours": [list(issue) for issue in run.ours],
        } for run in runs], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
