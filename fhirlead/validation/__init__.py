"""Validation of every incoming resource: server rules, the R4 JSON Schema, the base StructureDefinitions' element
rules (`structure`, with the narrative's), their invariants (`invariants`), and (later) profiles."""

from fhirlead.validation.validator import Validator

__all__ = ["Validator"]
