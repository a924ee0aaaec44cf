"""Native versions of the hottest FHIRHelpers 4.x functions.

FHIRHelpers runs as written (its ELM is compiled like any library); these replacements only skip the
interpretive overhead of the few conversions called for nearly every FHIR element a measure touches
(ToConcept, ToCode, ToInterval(Period), ToQuantity, ToValue...). Each one reproduces the published
CQL definition step by step, including its null handling and its errors, and the test suite checks
them against the ELM versions on every test resource.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirlead.cql import model
from fhirlead.cql.clinical import Code, Concept
from fhirlead.cql.compare import dedupe
from fhirlead.cql.compiler import CompiledFunction
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node, primitive_types
from fhirlead.cql.quantity import Quantity, Ratio

FHIR = "{http://hl7.org/fhir}"
UCUM = "http://unitsofmeasure.org"
CALENDAR_UNITS = "http://hl7.org/fhirpath/CodeSystem/calendar-units"

_PRIMITIVES = primitive_types() - {"xhtml"}
_get = model.get
_pv = model.primitive_value


def _value(node: Any, tz: int) -> Any:
    """`element.value` for a primitive element that may be absent."""
    return None if node is None else _pv(node, tz)


def to_calendar_unit(unit: str | None) -> str | None:
    return (
        {
            "ms": "millisecond",
            "s": "second",
            "min": "minute",
            "h": "hour",
            "d": "day",
            "wk": "week",
            "mo": "month",
            "a": "year",
        }.get(unit, unit)
        if unit is not None
        else None
    )  # type: ignore[arg-type]


def to_code(ctx: Any, coding: Any) -> Code | None:
    if coding is None:
        return None
    raw = coding.raw
    if type(raw) is not dict:
        return Code(None)
    tz = ctx.tz
    return Code(
        _value(_get(coding, "code"), tz),
        _value(_get(coding, "system"), tz),
        _value(_get(coding, "version"), tz),
        _value(_get(coding, "display"), tz),
    )


def to_concept(ctx: Any, concept: Any) -> Concept | None:
    if concept is None:
        return None
    codings = _get(concept, "coding")
    # the ELM builds codes with a query (distinct by default); over a null source it returns null
    codes = None if codings is None else dedupe([to_code(ctx, c) for c in codings])
    return Concept(codes, _value(_get(concept, "text"), ctx.tz))


def to_interval_period(ctx: Any, period: Any) -> Interval | None:
    if period is None:
        return None
    tz = ctx.tz
    start = _get(period, "start")
    end = _value(_get(period, "end"), tz)
    if start is None:
        return Interval(None, end, False, True, "DateTime")
    return Interval(_pv(start, tz), end, True, True, "DateTime")


def _quantity(ctx: Any, quantity: Any, honour_comparator: bool) -> Quantity | None:
    if quantity is None:
        return None
    tz = ctx.tz
    if type(quantity.raw) is not dict:
        # A primitive where the profile promised a Quantity (e.g. valueInteger in a BMI observation):
        # the published CQL reads its `value` and finds no comparator, system, code or unit.
        value = _pv(quantity, tz)
        if value is None or type(value) is bool or not isinstance(value, int | Decimal):
            return None
        return Quantity(Decimal(value), "1")
    value = _value(_get(quantity, "value"), tz)
    if value is None:
        return None
    if honour_comparator and _get(quantity, "comparator") is not None:
        raise CqlEvaluationError(
            "FHIRHelpers.ToQuantity.ComparatorQuantityNotSupported: FHIR Quantity value has "
            "a comparator and cannot be converted to a System.Quantity value."
        )
    system_node = _get(quantity, "system")
    system = _value(system_node, tz)
    if system_node is None or system in (UCUM, CALENDAR_UNITS):
        unit = _value(_get(quantity, "code"), tz)
        if unit is None:
            unit = _value(_get(quantity, "unit"), tz)
        if unit is None:
            unit = "1"
        return Quantity(value, to_calendar_unit(unit))
    unit_text = _value(_get(quantity, "unit"), tz)
    code_text = _value(_get(quantity, "code"), tz)
    raise CqlEvaluationError(
        f"FHIRHelpers.ToQuantity.InvalidFHIRQuantity: Invalid FHIR Quantity code: "
        f"{unit_text} ({system}|{code_text})"
    )


def to_quantity(ctx: Any, quantity: Any) -> Quantity | None:
    return _quantity(ctx, quantity, True)


def to_quantity_ignoring_comparator(ctx: Any, quantity: Any) -> Quantity | None:
    return _quantity(ctx, quantity, False)


def to_interval_range(ctx: Any, rng: Any) -> Interval | None:
    if rng is None:
        return None
    return Interval(
        to_quantity(ctx, _get(rng, "low")), to_quantity(ctx, _get(rng, "high")), True, True, "Quantity"
    )


def to_ratio(ctx: Any, ratio: Any) -> Ratio | None:
    if ratio is None:
        return None
    return Ratio(to_quantity(ctx, _get(ratio, "numerator")), to_quantity(ctx, _get(ratio, "denominator")))  # type: ignore[arg-type]


_QUANTITY_TYPES = frozenset(
    {"Age", "Count", "Distance", "Duration", "Quantity", "SimpleQuantity", "MoneyQuantity"}
)


_PASS_THROUGH = frozenset(
    {
        "Address",
        "Annotation",
        "Attachment",
        "ContactPoint",
        "HumanName",
        "Identifier",
        "Money",
        "Reference",
        "SampledData",
        "Signature",
        "Timing",
        "ContactDetail",
        "Contributor",
        "DataRequirement",
        "Expression",
        "ParameterDefinition",
        "RelatedArtifact",
        "TriggerDefinition",
        "UsageContext",
        "Dosage",
        "Meta",
    }
)


def to_value(ctx: Any, value: Any) -> Any:
    """FHIRHelpers.ToValue: the System value of a choice element, by its FHIR type."""
    if type(value) is not Node:
        return None
    t = value.t
    if t in _PRIMITIVES:
        return _pv(value, ctx.tz)
    if t in _QUANTITY_TYPES:
        return to_quantity(ctx, value)
    if t == "CodeableConcept":
        return to_concept(ctx, value)
    if t == "Coding":
        return to_code(ctx, value)
    if t == "Range":
        return to_interval_range(ctx, value)
    if t == "Period":
        return to_interval_period(ctx, value)
    if t == "Ratio":
        return to_ratio(ctx, value)
    return value if model.ancestors(t) & _PASS_THROUGH else None


def primitive_accessor(ctx: Any, value: Any) -> Any:
    """ToString/ToDateTime/ToBoolean/...(value X): value.value."""
    return None if value is None else _pv(value, ctx.tz)


def _native_for(fn: CompiledFunction) -> Callable[..., Any] | None:
    name = fn.name
    types = fn.operand_types
    if len(types) != 1:
        return None
    t = types[0]
    if name == "ToValue":
        return to_value
    if not isinstance(t, str) or not t.startswith(FHIR):
        return None
    tname = t[len(FHIR) :]
    table: dict[tuple[str, str], Callable[..., Any]] = {
        ("ToConcept", "CodeableConcept"): to_concept,
        ("ToCode", "Coding"): to_code,
        ("ToInterval", "Period"): to_interval_period,
        ("ToInterval", "Range"): to_interval_range,
        ("ToQuantity", "Quantity"): to_quantity,
        ("ToQuantityIgnoringComparator", "Quantity"): to_quantity_ignoring_comparator,
        ("ToRatio", "Ratio"): to_ratio,
    }
    native = table.get((name, tname))
    if native is not None:
        return native
    if name in (
        "ToString",
        "ToBoolean",
        "ToDate",
        "ToDateTime",
        "ToDecimal",
        "ToInteger",
        "ToTime",
    ) and _is_value_accessor(fn):
        return primitive_accessor
    return None


def _is_value_accessor(fn: CompiledFunction) -> bool:
    """True when the body is exactly `operand.value` (the generated FHIRHelpers accessors)."""
    body = fn.definition.get("expression") or {}
    src = body.get("source") or {}
    return (
        body.get("type") == "Property"
        and body.get("path") == "value"
        and src.get("type") == "OperandRef"
        and src.get("name") == fn.operand_names[0]
    )


def native_function(library_name: str, fn: CompiledFunction) -> Callable[..., Any] | None:
    """The native replacement for a FHIRHelpers function, or None to run the ELM."""
    if library_name != "FHIRHelpers":
        return None
    return _native_for(fn)
