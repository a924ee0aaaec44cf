"""String operators: Concatenate, Combine, Split, Length is in lists, Upper, Lower, Substring..."""

from __future__ import annotations

import re
from typing import Any

from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.model import Node, primitive_value


@handles("Concatenate")
def concatenate(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    fns = lc.operands(node)

    def f(ctx: Any) -> str | None:
        parts = [fn(ctx) for fn in fns]
        if any(p is None for p in parts):
            return None
        return "".join(parts)

    return f


@handles("Combine")
def combine(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    src = lc.compile(node["source"])
    sep = lc.compile(node["separator"]) if node.get("separator") else (lambda ctx: "")

    def f(ctx: Any) -> str | None:
        items = src(ctx)
        if items is None:
            return None
        s = sep(ctx)
        if s is None:
            return None
        return s.join(x for x in items if x is not None)

    return f


@handles("Split")
def split(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    text = lc.compile(node["stringToSplit"])
    sep = lc.compile(node["separator"]) if node.get("separator") else (lambda ctx: None)

    def f(ctx: Any) -> list[str] | None:
        t = text(ctx)
        if type(t) is Node:
            # Translators 3.x split `medication.reference` (a FHIR string) without the FHIRHelpers
            # conversion in the retrieves they expand; the System value is meant.
            t = primitive_value(t, ctx.tz)
        if t is None:
            return None
        s = sep(ctx)
        if s is None or s == "":
            return [t]
        return t.split(s)

    return f


def _unary(fn: Any) -> Any:
    def compile_unary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        (a,) = lc.operands(node)
        return lambda ctx: None if (v := a(ctx)) is None else fn(v)

    return compile_unary


handles("Upper")(_unary(str.upper))
handles("Lower")(_unary(str.lower))


@handles("StartsWith", "EndsWith", "Matches", "PositionOf", "LastPositionOf", "ReplaceMatches")
def string_binary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    t = node["type"]
    if t in ("PositionOf", "LastPositionOf"):
        pattern = lc.compile(node["pattern"])
        string = lc.compile(node["string"])

        def position(ctx: Any) -> int | None:
            p, s = pattern(ctx), string(ctx)
            if p is None or s is None:
                return None
            return s.find(p) if t == "PositionOf" else s.rfind(p)

        return position
    fns = lc.operands(node)

    def f(ctx: Any) -> Any:
        vals = [fn(ctx) for fn in fns]
        if any(v is None for v in vals):
            return None
        if t == "StartsWith":
            return vals[0].startswith(vals[1])
        if t == "EndsWith":
            return vals[0].endswith(vals[1])
        if t == "Matches":
            return re.fullmatch(vals[1], vals[0], flags=re.DOTALL) is not None
        return re.sub(vals[1], vals[2].replace("$", "\\"), vals[0])

    return f


@handles("Substring")
def substring(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    s = lc.compile(node["stringToSub"])
    start = lc.compile(node["startIndex"])
    length = lc.compile(node["length"]) if node.get("length") else (lambda ctx: None)

    def f(ctx: Any) -> str | None:
        text, i, n = s(ctx), start(ctx), length(ctx)
        if text is None or i is None or i < 0 or i >= len(text):
            return None
        return text[i:] if n is None else text[i : i + n]

    return f
