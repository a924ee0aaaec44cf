"""Functions (overloads, fluent calls, memoisation), parameters, includes resolved by name and version,
and the engine's refusal to evaluate anything it does not implement."""

from __future__ import annotations

import pytest

from fhirlead.cql.errors import CqlEvaluationError, ElmLoadError, UnsupportedElmError
from fhirlead.cql.library import ElmLibrary, LibrarySet
from fhirlead.cql.retrieve import InMemoryDataSource
from tests.cql.elm import SYS, engine_for, library, lit, op, run

INT = {"type": "NamedTypeSpecifier", "name": SYS + "Integer"}
STR = {"type": "NamedTypeSpecifier", "name": SYS + "String"}


def fn(body: dict, *operands: tuple[str, dict], fluent: bool = False) -> dict:
    return {
        "type": "FunctionDef",
        "fluent": fluent,
        "expression": body,
        "operand": [{"name": n, "operandTypeSpecifier": t} for n, t in operands],
    }


def operand(name: str) -> dict:
    return {"type": "OperandRef", "name": name}


def call(
    name: str, *args: dict, signature: list[dict] | None = None, library_name: str | None = None
) -> dict:
    node: dict = {"type": "FunctionRef", "name": name, "operand": list(args)}
    if signature:
        node["signature"] = signature
    if library_name:
        node["libraryName"] = library_name
    return node


def evaluate(defs: dict, name: str, *others: dict, parameters: dict | None = None) -> object:
    eng = engine_for(library(defs), *others)
    return eng.evaluate(eng.compiler_for("Test"), [name], InMemoryDataSource([]), parameters)[name]


def test_function_call_binds_operands() -> None:
    defs = {"Double": fn(op("Multiply", operand("x"), lit(2)), ("x", INT)), "R": call("Double", lit(21))}
    assert evaluate(defs, "R") == 42


def test_overloads_resolved_by_signature_and_at_run_time() -> None:
    int_version = fn(lit("int"), ("x", INT))
    str_version = fn(lit("string"), ("x", STR))
    lib = library(
        {
            "Kind": int_version,
            "R1": call("Kind", lit(1), signature=[INT]),
            "R2": call("Kind", lit("a"), signature=[STR]),
            "R3": call("Kind", lit("b")),
        }
    )
    lib["library"]["statements"]["def"].append({"name": "Kind", "context": "Patient", **str_version})
    eng = engine_for(lib)
    values = eng.evaluate(eng.compiler_for("Test"), ["R1", "R2", "R3"], InMemoryDataSource([]))
    assert values == {"R1": "int", "R2": "string", "R3": "string"}


def test_parameters_and_defaults() -> None:
    lib = library(
        {"R": op("Add", {"type": "ParameterRef", "name": "P"}, lit(1))},
        parameters={"def": [{"name": "P", "default": lit(10)}]},
    )
    eng = engine_for(lib)
    comp = eng.compiler_for("Test")
    assert eng.evaluate(comp, ["R"], InMemoryDataSource([]))["R"] == 11
    assert eng.evaluate(comp, ["R"], InMemoryDataSource([]), {"P": 1})["R"] == 2


def test_includes_resolve_by_name_and_version_not_namespace() -> None:
    helper = library({"Answer": lit(42)}, name="Helpers", version="2.0.0")
    main = library(
        {"R": {"type": "ExpressionRef", "libraryName": "H", "name": "Answer"}},
        includes={
            "def": [{"localIdentifier": "H", "path": "http://example.org/ns/Helpers", "version": "2.0.0"}]
        },
    )
    eng = engine_for(main, helper)
    assert eng.evaluate(eng.compiler_for("Test"), ["R"], InMemoryDataSource([]))["R"] == 42
    wrong = library(
        {"R": {"type": "ExpressionRef", "libraryName": "H", "name": "Answer"}},
        includes={"def": [{"localIdentifier": "H", "path": "Helpers", "version": "9.9.9"}]},
    )
    eng = engine_for(wrong, helper)
    with pytest.raises(ElmLoadError, match=r"Helpers version 9\.9\.9"):
        eng.evaluate(eng.compiler_for("Test"), ["R"], InMemoryDataSource([]))


def test_library_resource_version_is_an_alias_of_the_elm_version() -> None:
    lib = ElmLibrary(library({"A": lit(1)}, name="M", version="0.4.000"), resource_version="0.5.000")
    libs = LibrarySet([lib])
    assert libs.resolve("M", "0.5.000") is lib
    assert libs.resolve("M", "0.4.000") is lib


def test_unsupported_node_names_type_library_and_locator() -> None:
    node = {"type": "FancyNewOperator", "locator": "12:3-12:40", "operand": [lit(1)]}
    with pytest.raises(UnsupportedElmError) as info:
        run(node)
    assert info.value.node_type == "FancyNewOperator"
    assert "Test 1.0.0" in str(info.value) and "12:3-12:40" in str(info.value)


def test_external_function_without_native_implementation_is_an_error() -> None:
    defs = {
        "Ext": {
            "type": "FunctionDef",
            "external": True,
            "operand": [{"name": "x", "operandTypeSpecifier": INT}],
        },
        "R": call("Ext", lit(1)),
    }
    with pytest.raises(UnsupportedElmError, match="external function Ext"):
        evaluate(defs, "R")


def test_unfiltered_context_definitions_are_refused() -> None:
    lib = library({"R": {"type": "ExpressionRef", "name": "Pop"}})
    lib["library"]["statements"]["def"].append({"name": "Pop", "context": "Unfiltered", "expression": lit(1)})
    eng = engine_for(lib)
    with pytest.raises(UnsupportedElmError, match="Unfiltered"):
        eng.evaluate(eng.compiler_for("Test"), ["R"], InMemoryDataSource([]))


def test_strict_cast_failure_raises() -> None:
    with pytest.raises(CqlEvaluationError, match="cannot cast"):
        run({"type": "As", "operand": lit("x"), "asType": SYS + "Integer", "strict": True})
    assert run({"type": "As", "operand": lit("x"), "asType": SYS + "Integer"}) is None


def test_expression_definitions_are_evaluated_once_per_context() -> None:
    calls = []
    from fhirlead.cql.compiler import REGISTRY

    def counting(node: dict, lc: object) -> object:
        def f(ctx: object) -> int:
            calls.append(1)
            return 1

        return f

    REGISTRY["CountingProbe"] = counting
    try:
        lib = library(
            {
                "Probe": {"type": "CountingProbe"},
                "R": op(
                    "Add",
                    {"type": "ExpressionRef", "name": "Probe"},
                    {"type": "ExpressionRef", "name": "Probe"},
                ),
            }
        )
        eng = engine_for(lib)
        assert eng.evaluate(eng.compiler_for("Test"), ["R"], InMemoryDataSource([]))["R"] == 2
        assert len(calls) == 1
    finally:
        del REGISTRY["CountingProbe"]
