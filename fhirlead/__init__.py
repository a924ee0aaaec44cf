"""fhirlead: a FHIR R4 server for accountable-care (CMS LEAD) organisations."""

__version__ = "0.1.0"
