"""Terminology for binding checks: ValueSet membership over held ValueSets and CodeSystems.

https://hl7.org/fhir/R4/terminologies.html; see `valuesets.Terminology`.
"""

from fhirlead.terminology.valuesets import Terminology, default_terminology, profile_resources

__all__ = ["Terminology", "default_terminology", "profile_resources"]
