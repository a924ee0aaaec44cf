"""The ELM operators the translator emits less often (iteration, navigation, Convert, boundaries...).

Every concrete Expression type of the ELM r1 schema has a compiler; each test builds the node by hand.
"""

from __future__ import annotations

from decimal import Decimal

from fhirlead.cql.compiler import REGISTRY
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.quantity import Quantity, Ratio
from tests.cql.elm import SYS, date, dt, interval, lit, lst, op, qty, run, time, un

# The concrete Expression types of the ELM r1 schema (expression.xsd, clinicalexpression.xsd).
_ELM_TEXT = """
Abs Add After AllTrue And AnyInCodeSystem AnyInValueSet AnyTrue As Avg Before CalculateAge
CalculateAgeAt CanConvert CanConvertQuantity Case Ceiling Children Coalesce Code CodeRef
CodeSystemRef Collapse Combine Concatenate Concept ConceptRef Contains Convert ConvertQuantity
ConvertsToBoolean ConvertsToDate ConvertsToDateTime ConvertsToDecimal ConvertsToInteger
ConvertsToLong ConvertsToQuantity ConvertsToRatio ConvertsToString ConvertsToTime Count Current Date
DateFrom DateTime DateTimeComponentFrom Descendants DifferenceBetween Distinct Divide
DurationBetween End Ends EndsWith Equal Equivalent Except Exists Exp Expand ExpandValueSet
ExpressionRef Filter First Flatten Floor ForEach FunctionRef GeometricMean Greater GreaterOrEqual
HighBoundary IdentifierRef If Implies In InCodeSystem InValueSet IncludedIn Includes IndexOf Indexer
Instance Intersect Interval Is IsFalse IsNull IsTrue Iteration Last LastPositionOf Length Less
LessOrEqual List Literal Ln Log LowBoundary Lower Matches Max MaxValue Median Meets MeetsAfter
MeetsBefore Message Min MinValue Mode Modulo Multiply Negate Not NotEqual Now Null OperandRef Or
Overlaps OverlapsAfter OverlapsBefore ParameterRef PointFrom PopulationStdDev PopulationVariance
PositionOf Power Precision Predecessor Product ProperContains ProperIn ProperIncludedIn
ProperIncludes Property Quantity Query QueryLetRef Ratio Repeat ReplaceMatches Retrieve Round SameAs
SameOrAfter SameOrBefore SingletonFrom Size Slice Sort Split SplitOnMatches Start Starts StartsWith
StdDev Substring Subtract Successor Sum Time TimeFrom TimeOfDay Times TimezoneFrom
TimezoneOffsetFrom ToBoolean ToChars ToConcept ToDate ToDateTime ToDecimal ToInteger ToList ToLong
ToQuantity ToRatio ToString ToTime Today Total Truncate TruncatedDivide Tuple Union Upper
ValueSetRef Variance Width Xor AliasRef Aggregate
"""
ELM_EXPRESSIONS = _ELM_TEXT.split()


def test_every_elm_expression_type_has_a_compiler() -> None:
    assert [t for t in ELM_EXPRESSIONS if t not in REGISTRY] == []


def this(scope: str | None = None) -> dict:
    return {"type": "Current", **({"scope": scope} if scope else {})}


def test_filter_for_each_repeat_and_aggregate() -> None:
    nums = lst(lit(1), lit(2), lit(3), lit(4))
    assert run({"type": "Filter", "source": nums, "condition": op("Greater", this(), lit(2))}) == [3, 4]
    assert run({"type": "Filter", "source": nums, "scope": "X",
                "condition": op("Equal", this("X"), lit(1))}) == [1]
    assert run({"type": "ForEach", "source": nums, "element": op("Multiply", this(), lit(10))}) == [10, 20, 30, 40]
    indexes = {"type": "ForEach", "source": lst(lit("a"), lit("b")), "element": {"type": "Iteration"}}
    assert run(indexes) == [0, 1]
    halve = {"type": "If", "condition": op("Greater", this(), lit(1)),
             "then": {"type": "TruncatedDivide", "operand": [this(), lit(2)]}, "else": {"type": "Null"}}
    assert run({"type": "Repeat", "source": lst(lit(8)), "element": halve}) == [4, 2, 1]
    total = {"type": "Aggregate", "source": nums, "initialValue": lit(100),
             "iteration": op("Add", {"type": "Total"}, this())}
    assert run(total) == 110
    assert run({"type": "Filter", "source": {"type": "Null"}, "condition": lit(True)}) is None


def test_sort_node_and_aggregate_path() -> None:
    assert run({"type": "Sort", "source": lst(lit(3), lit(1), lit(2)),
                "by": [{"type": "ByDirection", "direction": "desc"}]}) == [3, 2, 1]
    quantities = lst(qty(1, "mg"), qty(4, "mg"))
    assert run({"type": "Sum", "source": quantities, "path": "value"}) == Decimal(5)


def test_children_and_descendants_of_fhir_data() -> None:
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "valueQuantity": {"value": 5, "unit": "mg"},
           "code": {"coding": [{"system": "s", "code": "c"}]}}
    src = {"type": "SingletonFrom", "operand": {"type": "Retrieve", "dataType": "{http://hl7.org/fhir}Observation"}}
    kids = run({"type": "Children", "source": src}, [obs])
    assert {k.t for k in kids} >= {"CodeableConcept", "Quantity", "code"} and len(kids) == 4
    everything = run({"type": "Descendants", "source": src}, [obs])
    assert {getattr(x, "t", None) for x in everything} >= {"Coding", "decimal", "uri"}
    assert run({"type": "Descendents", "source": src}, [obs]) == everything


def test_convert_and_can_convert() -> None:
    to_int = {"type": "Convert", "operand": lit("12"), "toType": SYS + "Integer"}
    assert run(to_int) == 12
    spec = {"type": "NamedTypeSpecifier", "name": SYS + "Decimal"}
    assert run({"type": "Convert", "operand": lit(2), "toTypeSpecifier": spec}) == Decimal(2)
    assert run({"type": "CanConvert", "operand": lit("x"), "toType": SYS + "Integer"}) is False
    assert run({"type": "CanConvert", "operand": lit("3"), "toType": SYS + "Integer"}) is True
    assert run({"type": "CanConvert", "operand": {"type": "Null"}, "toType": SYS + "Integer"}) is None
    assert run(un("ConvertsToRatio", lit("1 'mg':2 'mL'"))) is True
    assert run(un("ConvertsToRatio", lit("1 mg"))) is False
    assert run(un("ToRatio", lit("1 'mg':2 'mL'"))) == Ratio(Quantity(Decimal(1), "mg"), Quantity(Decimal(2), "mL"))


def test_strings_to_chars_and_split_on_matches() -> None:
    assert run(un("ToChars", lit("abc"))) == ["a", "b", "c"]
    node = {"type": "SplitOnMatches", "stringToSplit": lit("a1b22c"), "separatorPattern": lit("[0-9]+")}
    assert run(node) == ["a", "b", "c"]


def test_precision_and_boundaries() -> None:
    assert run(un("Precision", lit(Decimal("1.58700")))) == 5
    assert run(un("Precision", date(2014))) == 4
    assert run(un("Precision", dt(2014, 1, 5, 10, 30, 0, 0))) == 17
    assert run(un("Precision", time(10, 30))) == 4
    assert run(op("LowBoundary", lit(Decimal("1.587")), lit(8))) == Decimal("1.58700000")
    assert run(op("HighBoundary", lit(Decimal("1.587")), lit(8))) == Decimal("1.58799999")
    assert run(op("HighBoundary", lit(Decimal("-1.587")), lit(8))) == Decimal("-1.58700000")
    assert run(op("LowBoundary", date(2014), lit(6))) == Date(2014, 1)
    assert run(op("HighBoundary", date(2014), lit(8))) == Date(2014, 12, 31)
    high = run(op("HighBoundary", dt(2014, 1, 1, 8, tz=0), lit(17)))
    assert high == DateTime((2014, 1, 1, 8, 59, 59, 999), 0)
    assert run(op("HighBoundary", time(10, 30), lit(9))) == Time(10, 30, 59, 999)
    assert run(op("LowBoundary", date(2014, 1, 1), lit(4))) is None  # coarser than the value


def test_size_of_intervals_and_timezone_from() -> None:
    assert run(un("Size", interval(lit(1), lit(10)))) == 10
    assert run(un("Size", interval(lit(1), lit(10), high_closed=False))) == 9
    assert run(un("TimezoneFrom", dt(2014, 1, 1, 8, tz=-5.0))) == Decimal("-5")
