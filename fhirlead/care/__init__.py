"""Care coordination that acts (issue #17): data-driven rules that turn clinical events into follow-up
Tasks for the patient's Lead care team (docs/care-coordination.md).

A rule is a JSON file (`fhirlead/care/rules/`, and FHIRLEAD_CARE_RULES_DIR): which resource type and
FHIRPath trigger start it, when it fires (at once, or when a window closes), what must not exist by then,
and what the Task says. One engine runs them all (`engine`), through a write observer that records
durable timers in the same commit as the write (`timers`) and a worker in every `fhirlead serve`.
"""

from __future__ import annotations

from typing import Any


def register(registry: Any) -> None:
    """The `fhirlead.operations` entry point: the rules' write observer and timer worker."""
    from fhirlead.care import engine

    registry.add_write_observer(engine.observer)
    registry.add_worker(engine.worker)
