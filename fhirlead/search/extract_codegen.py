"""One generated Python function per resource type that computes all its index entries in one pass.

Interpreting the extraction plans (`fhirlead.search.extract`) costs, per parameter, a call per path step
and a new list per step; extraction runs on every write (and on every AuditEvent the trail stores, one per
request). The function generated here does the same work as that interpretation, parameter by parameter
in plan order, with the element steps of each compiled path written out as nested loops over
`dict.get` (FHIRPath's flattening of collections: a list's items, or the one value). Steps that filter or
reach extensions are called per node; a path with an index (`[0]`) or `%resource` is run as its own
accessor, as is a fhirpathpy fallback; composites go through the shared composite routine. The entries,
their order and the per-parameter failure rule (a failing parameter keeps what it added and is logged)
are those of the interpretation: `tests/search/test_extract_codegen.py` holds them equal.

The source contains only generated names and `repr()` literals (element names from the R4 definitions,
parameter codes), so nothing a client wrote is ever executed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirlead.search.entries import IndexEntries

Generated = Callable[[dict[str, Any], IndexEntries, dict], None]
MAX_DEPTH = 12  # nested loops per path before a path is run as its accessor (CPython allows 20 blocks)


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}

    def name(self, prefix: str, value: Any) -> str:
        """A global of the generated function holding `value`."""
        key = f"{prefix}{len(self.names)}"
        self.names[key] = value
        return key

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)


def _per_node(steps: tuple[Any, ...], root_step: Any) -> bool:
    """Whether every step maps each node on its own (an index or `%resource` looks at the whole list)."""
    return all(step is not root_step and not getattr(step, "whole", False) for step in steps)


def _path(source: _Source, depth: int, steps: tuple[Any, ...], key: str, convert: str) -> None:
    """Nested loops for `steps` from the resource, calling `convert` on each value reached."""
    node, known_dict = "resource", True
    for level, step in enumerate(steps):
        field = getattr(step, "field", None)
        value, item = f"v{level}", f"n{level}"
        if field is not None:
            if not known_dict:
                source.emit(depth, f"if type({node}) is dict:")
                depth += 1
            source.emit(depth, f"{value} = {node}.get({field!r})")
            source.emit(depth, f"if {value} is not None:")
            source.emit(depth + 1, f"for {item} in ({value} if type({value}) is list else ({value},)):")
            depth += 2
        else:
            source.emit(depth, f"for {item} in {source.name('S', step)}([{node}]):")
            depth += 1
        node, known_dict = item, False
    source.emit(depth, f"{convert}({key}, {node}, out)")


def generate(plans: tuple[Any, ...], composite: Callable[..., None], failed: Callable[[str, Exception], None],
             root_step: Any) -> Generated:
    """The extraction function for one type's `plans` (`fhirlead.search.extract.ParamPlan`s):
    `function(resource, out, reached)` adds the entries to `out` (not deduplicated); `reached` is the
    composite routine's memo for this resource. `failed(key, error)` is told of a parameter that raised."""
    source = _Source()
    source.emit(0, "def extract(resource, out, reached):")
    source.emit(1, "root = [resource]")
    composite_name = source.name("COMPOSITE", composite)
    failed_name = source.name("FAILED", failed)
    for plan in plans:
        depth = 1
        key = source.name("K", plan.key)
        if plan.fields is not None:
            test = " or ".join(f"{field!r} in resource" for field in sorted(plan.fields))
            source.emit(depth, f"if {test or 'False'}:")
            depth += 1
        source.emit(depth, "try:")
        if plan.components:
            source.emit(depth + 1, f"{composite_name}({source.name('P', plan)}, resource, out, reached)")
        for branch in () if plan.components else plan.branches:
            convert = source.name("C", branch.convert)
            accessor = source.name("A", branch.accessor)
            steps = branch.accessor.steps if branch.compiled else ()
            if branch.compiled and steps and len(steps) <= MAX_DEPTH and _per_node(steps, root_step):
                _path(source, depth + 1, steps, key, convert)
            elif branch.compiled:
                source.emit(depth + 1, f"for value in {accessor}(root, resource):")
                source.emit(depth + 2, f"{convert}({key}, value, out)")
            else:
                source.emit(depth + 1, f"for value in {accessor}(resource):")
                source.emit(depth + 2, f"{convert}({key}, value, out)")
        source.emit(depth + 1, "pass")
        source.emit(depth, "except Exception as error:")
        source.emit(depth + 1, f"{failed_name}({key}, error)")
    namespace = dict(source.names)
    exec(compile("\n".join(source.lines), "<fhirlead extraction>", "exec"), namespace)
    return namespace["extract"]
