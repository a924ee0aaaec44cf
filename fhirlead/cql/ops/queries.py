"""Queries: sources (one or many), let, with/without, where, return, aggregate and sort.

Aliases live in the context frame while the query iterates and are restored afterwards, so nested
queries may reuse alias names (the translator emits `$this` at several levels). A single non-list
source gives a single (or null) result, as CQL defines for singleton queries.
"""

from __future__ import annotations

import functools
from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.ops.structured import getter_for
from fhirlead.cql.tuples import Tuple

_MISSING = object()
SORT_ITEM = "\x00sort-item"


def _sort_cmp(a: Any, b: Any) -> int:
    if a is None:
        return 0 if b is None else -1
    if b is None:
        return 1
    return cmp.compare(a, b) or 0


def _compile_sort(node: dict[str, Any], lc: LibraryCompiler) -> Any:
    """A function (ctx, items) -> sorted items."""
    keys: list[tuple[Any, bool]] = []
    for by in node.get("by", ()):
        desc = by.get("direction", "asc") in ("desc", "descending")
        t = by["type"]
        if t == "ByDirection":
            keys.append((None, desc))
        elif t == "ByColumn":
            getters = [getter_for(p) for p in by["path"].split(".") if p != "$this"]
            keys.append((("column", getters), desc))
        elif t == "ByExpression":
            keys.append((("expr", lc.compile(by["expression"])), desc))
        else:
            raise lc.unsupported(by)

    def sort(ctx: Any, items: list[Any]) -> list[Any]:
        out = list(items)
        frame = ctx.frame
        for key, desc in reversed(keys):  # stable sort, least significant key first
            if key is None:
                decorated = [(x, x) for x in out]
            elif key[0] == "column":
                decorated = []
                for x in out:
                    v = x
                    for g in key[1]:
                        v = g(v, ctx)
                    decorated.append((v, x))
            else:
                fn = key[1]
                saved = frame.get(SORT_ITEM, _MISSING)
                decorated = []
                for x in out:
                    frame[SORT_ITEM] = x
                    decorated.append((fn(ctx), x))
                if saved is _MISSING:
                    frame.pop(SORT_ITEM, None)
                else:
                    frame[SORT_ITEM] = saved
            decorated.sort(key=functools.cmp_to_key(lambda p, q: _sort_cmp(p[0], q[0])), reverse=desc)
            out = [x for _k, x in decorated]
        return out

    return sort


@handles("IdentifierRef")
def identifier_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """An unqualified identifier inside a sort expression: a property of the item being sorted, or
    (`$this`, as translators write `sort by start of $this`) the item itself."""
    name = node["name"]
    g = (lambda item, ctx: item) if name == "$this" else getter_for(name)

    def f(ctx: Any) -> Any:
        frame = ctx.frame
        if name in frame:
            return frame[name]
        item = frame.get(SORT_ITEM, _MISSING)
        if item is _MISSING:
            from fhirlead.cql.errors import CqlEvaluationError

            raise CqlEvaluationError(f"identifier {name!r} is not in scope")
        return g(item, ctx)

    return f


@handles("Query")
def query(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    sources = [(s["alias"], lc.compile(s["expression"])) for s in node["source"]]
    lets = [(item["identifier"], lc.compile(item["expression"])) for item in node.get("let") or ()]
    relationships = []
    for rel in node.get("relationship") or ():
        if rel["type"] not in ("With", "Without"):
            raise lc.unsupported(rel)
        relationships.append(
            (rel["type"] == "With", rel["alias"], lc.compile(rel["expression"]), lc.compile(rel["suchThat"]))
        )
    where = lc.compile(node["where"]) if node.get("where") is not None else None
    ret = node.get("return")
    ret_fn = lc.compile(ret["expression"]) if ret else None
    ret_distinct = bool(ret.get("distinct", True)) if ret else False
    agg = node.get("aggregate")
    if agg is not None:
        agg_name = agg["identifier"]
        agg_fn = lc.compile(agg["expression"])
        agg_start = lc.compile(agg["starting"]) if agg.get("starting") is not None else (lambda ctx: None)
        agg_distinct = bool(agg.get("distinct", False))
    sort = _compile_sort(node["sort"], lc) if node.get("sort") else None
    bound_names = [a for a, _ in sources] + [n for n, _ in lets] + [r[1] for r in relationships]
    if agg is not None:
        bound_names.append(agg_name)

    def passes(ctx: Any, frame: dict[str, Any]) -> bool:
        for name, fn in lets:
            frame[name] = fn(ctx)
        for is_with, alias, rel_src, such_that in relationships:
            related = rel_src(ctx)
            if related is None:
                related = []
            elif type(related) is not list:
                related = [related]
            found = False
            for r in related:
                frame[alias] = r
                if such_that(ctx) is True:
                    found = True
                    break
            if found != is_with:
                return False
        return where is None or where(ctx) is True

    def rows(ctx: Any) -> tuple[list[dict[str, Any]] | list[Any], bool]:
        """Source rows: items (single source) or alias->item dicts (multi-source)."""
        # A null source contributes no rows (so a query over a null singleton is null), as in the
        # reference engine; the query is a list query when any source is a list.
        if len(sources) == 1:
            value = sources[0][1](ctx)
            if type(value) is list:
                return value, True
            return ([] if value is None else [value]), False
        combos: list[dict[str, Any]] = [{}]
        any_list = False
        for alias, fn in sources:
            value = fn(ctx)
            if type(value) is list:
                any_list = True
                items = value
            else:
                items = [] if value is None else [value]
            combos = [{**c, alias: item} for c in combos for item in items]
        # A query over singleton sources only (`from First(A) X, Last(B) Y ...`) is a singleton too.
        return combos, any_list

    single_alias = sources[0][0] if len(sources) == 1 else None

    def run(ctx: Any) -> Any:
        frame = ctx.frame
        saved = {n: frame.get(n, _MISSING) for n in bound_names}
        try:
            items, is_list = rows(ctx)
            results: list[Any] = []
            if agg is not None:
                acc = agg_start(ctx)
                source_items = cmp.dedupe(items) if agg_distinct else items
                for item in source_items:
                    _bind(frame, single_alias, item)
                    if not passes(ctx, frame):
                        continue
                    frame[agg_name] = acc
                    acc = agg_fn(ctx)
                return acc
            for item in items:
                _bind(frame, single_alias, item)
                if not passes(ctx, frame):
                    continue
                if ret_fn is not None:
                    results.append(ret_fn(ctx))
                elif single_alias is not None:
                    results.append(item)
                else:
                    results.append(Tuple(item))
        finally:
            for n, v in saved.items():
                if v is _MISSING:
                    frame.pop(n, None)
                else:
                    frame[n] = v
        if ret_distinct:
            results = cmp.dedupe(results)
        if sort is not None:
            results = sort(ctx, results)
        if not is_list:
            return results[0] if results else None
        return results

    return run


def _bind(frame: dict[str, Any], single_alias: str | None, item: Any) -> None:
    if single_alias is not None:
        frame[single_alias] = item
    else:
        frame.update(item)
