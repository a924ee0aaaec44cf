"""List operators, aggregates and queries (CQL reference: List Operators, Aggregate Functions;
language semantics: Query Evaluation)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.tuples import Tuple
from tests.cql.elm import alias, interval, lit, lst, null, op, prop, qty, query, run, tup, un


def ints(*values: int | None) -> dict:
    return lst(*(lit(v) for v in values))


def test_membership_uses_equality_with_nulls_equal() -> None:
    assert run(op("In", lit(5), ints(1, 3, 5))) is True
    assert run(op("In", lit(5), ints(1, 3))) is False
    assert run(op("In", null(), ints(1, None))) is True
    assert run(op("In", lit(5), null())) is False
    assert run(op("In", lit("final"), lst(lit("final"), lit("amended")))) is True


def test_set_operations_on_lists() -> None:
    assert run(op("Union", ints(1, 2, 3), ints(3, 4))) == [1, 2, 3, 4]
    assert run(op("Union", null(), ints(4, 5))) == [4, 5]
    assert run(op("Intersect", ints(1, 2, 3), ints(2, 3, 4))) == [2, 3]
    assert run(op("Except", ints(1, 2, 3), ints(2))) == [1, 3]
    assert run(un("Distinct", ints(1, 1, None, None, 2))) == [1, None, 2]
    assert run(op("Includes", ints(1, 2, 3), ints(1, 3))) is True
    assert run(op("ProperIncludes", ints(1, 2, 3), ints(1, 2, 3))) is False


def test_exists_first_last_singleton() -> None:
    assert run(un("Exists", ints())) is False
    assert run(un("Exists", ints(None))) is False
    assert run(un("Exists", ints(None, 1))) is True
    assert run(un("Exists", null())) is False
    assert run({"type": "First", "source": ints(4, 5)}) == 4
    assert run({"type": "Last", "source": ints()}) is None
    assert run(un("SingletonFrom", ints(7))) == 7
    assert run(un("SingletonFrom", ints())) is None
    with pytest.raises(CqlEvaluationError, match="singleton"):
        run(un("SingletonFrom", ints(1, 2)))


def test_flatten_indexer_length() -> None:
    assert run(un("Flatten", lst(ints(1, 2), ints(3)))) == [1, 2, 3]
    assert run(op("Indexer", ints(4, 5, 6), lit(1))) == 5
    assert run(op("Indexer", ints(4, 5, 6), lit(9))) is None
    assert run(un("Length", ints(1, 2))) == 2


def test_aggregates_ignore_nulls() -> None:
    assert run({"type": "Count", "source": ints(1, None, 3)}) == 2
    assert run({"type": "Sum", "source": ints(1, None, 3)}) == 4
    assert run({"type": "Sum", "source": ints()}) is None
    assert run({"type": "Max", "source": ints(3, 9, 1)}) == 9
    assert run({"type": "Min", "source": lst(qty(1, "g"), qty(500, "mg"))}) == Quantity(500, "mg")
    assert run({"type": "Avg", "source": ints(1, 2)}) == Decimal("1.5")
    assert run({"type": "Median", "source": ints(5, 1, 3)}) == 3
    assert run({"type": "AllTrue", "source": lst()}) is True
    assert run({"type": "AnyTrue", "source": lst(lit(False), null())}) is False


def test_query_where_return_distinct() -> None:
    q = query([("X", ints(1, 2, 3, 4))], where=op("Greater", alias("X"), lit(2)))
    assert run(q) == [3, 4]
    q = query([("X", ints(1, 2, 3))], ret=lit("same"))
    assert run(q) == ["same"]  # return is distinct by default
    q = query([("X", ints(1, 2, 3))], ret=lit("same"), distinct=False)
    assert run(q) == ["same", "same", "same"]


def test_singleton_source_query_returns_a_single_value() -> None:
    q = query([("X", lit(5))], where=op("Greater", alias("X"), lit(2)))
    assert run(q) == 5
    q = query([("X", lit(1))], where=op("Greater", alias("X"), lit(2)))
    assert run(q) is None


def test_let_with_and_without() -> None:
    q = query(
        [("X", ints(1, 2, 3))],
        let=[{"identifier": "Y", "expression": op("Multiply", alias("X"), lit(10))}],
        ret={"type": "QueryLetRef", "name": "Y"},
    )
    assert run(q) == [10, 20, 30]
    with_clause = {
        "type": "With",
        "alias": "R",
        "expression": ints(2, 3),
        "suchThat": op("Equal", alias("R"), alias("X")),
    }
    assert run(query([("X", ints(1, 2, 3))], relationship=[with_clause])) == [2, 3]
    without = dict(with_clause, type="Without")
    assert run(query([("X", ints(1, 2, 3))], relationship=[without])) == [1]


def test_multi_source_query_is_a_cartesian_product() -> None:
    q = query(
        [("A", ints(1, 2)), ("B", ints(10, 20))], where=op("Less", op("Add", alias("A"), alias("B")), lit(22))
    )
    assert run(q) == [Tuple(A=1, B=10), Tuple(A=1, B=20), Tuple(A=2, B=10)]


def test_sort_directions_nulls_and_keys() -> None:
    asc = {"by": [{"type": "ByDirection", "direction": "asc"}]}
    desc = {"by": [{"type": "ByDirection", "direction": "desc"}]}
    assert run(query([("X", ints(3, None, 1, 2))], sort=asc)) == [None, 1, 2, 3]
    assert run(query([("X", ints(3, None, 1, 2))], sort=desc)) == [3, 2, 1, None]
    rows = lst(tup(k=lit(2), v=lit("b")), tup(k=lit(1), v=lit("a")))
    by_column = {"by": [{"type": "ByColumn", "path": "k", "direction": "asc"}]}
    assert [t["v"] for t in run(query([("T", rows)], sort=by_column))] == ["a", "b"]
    by_expression = {
        "by": [
            {
                "type": "ByExpression",
                "direction": "desc",
                "expression": {"type": "IdentifierRef", "name": "k"},
            }
        ]
    }
    assert [t["v"] for t in run(query([("T", rows)], sort=by_expression))] == ["b", "a"]


def test_aggregate_clause() -> None:
    q = query(
        [("X", ints(1, 2, 3, 4))],
        aggregate={"identifier": "R", "starting": lit(0), "expression": op("Add", alias("R"), alias("X"))},
    )
    assert run(q) == 10
    q = query(
        [("X", ints(1, 1, 2))],
        aggregate={
            "identifier": "R",
            "starting": lit(0),
            "distinct": True,
            "expression": op("Add", alias("R"), alias("X")),
        },
    )
    assert run(q) == 3


def test_nested_queries_may_reuse_alias_names() -> None:
    inner = query([("$this", ints(10, 20))], ret=op("Add", alias("$this"), lit(1)))
    outer = query([("$this", ints(1, 2))], ret=op("Add", alias("$this"), {"type": "Sum", "source": inner}))
    assert run(outer) == [33, 34]  # 1 + (11 + 21), 2 + (11 + 21)


def test_property_on_list_maps_and_flattens() -> None:
    rows = lst(tup(xs=ints(1, 2)), tup(xs=ints(3)), tup(xs=null()))
    assert run(prop("xs", rows)) == [1, 2, 3]


def test_interval_properties() -> None:
    node = interval(lit(1), lit(5), True, False)
    assert run(prop("high", node)) == 5
    assert run(prop("highClosed", node)) is False
