"""The native FHIRHelpers functions must give exactly what the published FHIRHelpers ELM gives.

Every FHIR element of every eCQM test resource is passed to each accelerated function both ways
(native, and the ELM compiled as written) and the results compared structurally (types, precision,
timezone, closedness, code lists...). Errors must be errors in both. Needs the shared eCQM data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest

from fhirlead.cql.clinical import Code, Concept
from fhirlead.cql.compiler import CompiledFunction
from fhirlead.cql.context import Context
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.engine import Engine
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node, get, primitive_types
from fhirlead.cql.quantity import Quantity, Ratio
from fhirlead.cql.tuples import Tuple
from fhirlead.measure import MeasureBundle
from tests.measure.shared_data import require_ecqm

FHIR = "{http://hl7.org/fhir}"
CHOICE_PREFIX = re.compile(r"^([a-z][a-zA-Z]*?)[A-Z]")


def freeze(v: Any) -> Any:
    """A structural, type-tagged form of a value for exact comparison."""
    t = type(v)
    if v is None or t in (bool, int, str):
        return (t.__name__, v)
    if t is Decimal:
        return ("Decimal", v.normalize())
    if t is DateTime:
        return ("DateTime", v.fields, v.tz)
    if t in (Date, Time):
        return (t.__name__, v.fields)
    if t is Quantity:
        return ("Quantity", v.value.normalize(), v.unit)
    if t is Ratio:
        return ("Ratio", freeze(v.numerator), freeze(v.denominator))
    if t is Code:
        return ("Code", v.code, v.system, v.version, v.display)
    if t is Concept:
        return ("Concept", None if v.codes is None else tuple(freeze(c) for c in v.codes), v.display)
    if t is Interval:
        return ("Interval", freeze(v.low), freeze(v.high), v.low_closed, v.high_closed, v.point_type)
    if t is Node:
        return ("Node", v.t, orjson.dumps(v.raw, option=orjson.OPT_SORT_KEYS), orjson.dumps(v.ext))
    if t is list:
        return ("List", tuple(freeze(x) for x in v))
    if t is Tuple:
        return ("Tuple", tuple(sorted((k, freeze(x)) for k, x in v.items())))
    if t is dict:
        return ("Resource", orjson.dumps(v, option=orjson.OPT_SORT_KEYS))
    raise AssertionError(f"unexpected value type {t}")


def elements(obj: Any) -> Iterator[Node]:
    """Every typed element below a resource or complex element."""
    raw = obj if type(obj) is dict else obj.raw
    if type(raw) is not dict:
        return
    for key in raw:
        if key.startswith("_") or key in ("resourceType", "contained"):
            continue
        value = get(obj, key)
        if value is None:
            m = CHOICE_PREFIX.match(key)
            value = get(obj, m.group(1)) if m else None
        for item in value if type(value) is list else [value]:
            if type(item) is Node:
                yield item
                yield from elements(item)


def _call(ctx: Context, fn: CompiledFunction, arg: Any, native: bool) -> Any:
    if native:
        assert fn.native is not None
        return fn.native(ctx, arg)
    body = fn.compiled_body()
    saved = ctx.frame
    ctx.frame = {fn.operand_names[0]: arg}
    try:
        return body(ctx)
    finally:
        ctx.frame = saved


def _outcome(ctx: Context, fn: CompiledFunction, arg: Any, native: bool) -> Any:
    try:
        return freeze(_call(ctx, fn, arg, native))
    except CqlEvaluationError:
        return "error"


@pytest.fixture(scope="module")
def setup() -> tuple[list[CompiledFunction], list[CompiledFunction], list[dict[str, Any]]]:
    root = require_ecqm()
    resources: list[dict[str, Any]] = []
    bundle = None
    for measure_dir in sorted(root.iterdir()):
        if not (measure_dir / "measure-bundle.json").is_file():
            continue
        if bundle is None:
            bundle = MeasureBundle.from_json(orjson.loads((measure_dir / "measure-bundle.json").read_bytes()))
        for path in sorted((measure_dir / "tests").glob("*.json")):
            if not path.name.endswith(".expected.json"):
                resources += [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]
    assert bundle is not None
    fast = Engine(bundle.libraries, bundle.terminology, native_helpers=True).compiler_for(
        "FHIRHelpers", "4.4.000"
    )
    slow = Engine(bundle.libraries, bundle.terminology, native_helpers=False).compiler_for(
        "FHIRHelpers", "4.4.000"
    )
    natives, written = [], []
    for name in fast.elm.functions:
        for f_fast, f_slow in zip(fast.functions(name), slow.functions(name), strict=True):
            if f_fast.native is not None:
                natives.append(f_fast)
                written.append(f_slow)
    return natives, written, resources


def _accepts(fn: CompiledFunction, node: Node) -> bool:
    t = fn.operand_types[0]
    if fn.name == "ToValue":
        return True
    from fhirlead.cql.model import is_fhir_type

    return isinstance(t, str) and t.startswith(FHIR) and is_fhir_type(node, t[len(FHIR) :])


def test_every_native_helper_matches_the_published_elm(setup: Any) -> None:
    natives, written, resources = setup
    names = {f.name for f in natives}
    assert {"ToValue", "ToConcept", "ToCode", "ToInterval", "ToQuantity", "ToString"} <= names
    ctx = Context(None, {}, DateTime((2026, 1, 1, 0, 0, 0, 0), 0), 0)
    checked = 0
    distinct: dict[Any, Node] = {}
    for r in resources:
        for n in elements(r):
            distinct.setdefault(freeze(n), n)
    nodes = list(distinct.values())
    # primitives without a value (extension only) and quantity comparators are covered too
    nodes += [
        Node("dateTime", None, {"extension": []}),
        Node("Quantity", {"value": 1, "comparator": "<"}),
        Node("Quantity", {"value": 2, "system": "http://snomed.info/sct", "code": "x"}),
        Node("Period", {"end": "2026-01-01"}),
        Node("CodeableConcept", {"text": "only text"}),
    ]
    by_type: dict[str, list[Node]] = {}
    for node in nodes:
        by_type.setdefault(node.t, []).append(node)
    for fast, slow in zip(natives, written, strict=True):
        for node in (n for t, group in by_type.items() if _accepts(fast, group[0]) for n in group):
            assert _outcome(ctx, fast, node, True) == _outcome(ctx, slow, node, False), (fast.name, node)
            checked += 1
        assert _outcome(ctx, fast, None, True) == _outcome(ctx, slow, None, False), fast.name
    print(f"{checked} native/ELM comparisons over {len(nodes)} distinct elements")
    assert checked > 1000
    assert primitive_types()
