"""FHIR R4 search: parameter registry, write-time index extraction, query parsing and result Bundles.

Layout (one job per module):
- registry:   the SearchParameters in force (official R4 + profiles/), per resource type
- fhirpath:   compiles SearchParameter expressions into plain accessors (fhirpathpy for the rest)
- extract:    resource -> IndexEntries at write time
- types/*:    one module per parameter type: value conversion (write) and value parsing (query)
- parse:      request parameters -> SearchQuery IR (+ warnings for ignored parameters)
- query:      the backend-neutral IR
- bundle:     searchset Bundle bytes from stored resource bytes
- conditional: the criteria matching that conditional interactions use
"""
