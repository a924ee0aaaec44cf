"""A native CQL engine: ELM JSON libraries compiled once into Python closures, evaluated per patient.

Module map:

- `library`      ELM loading (from Library resources) and include resolution by name + version
- `compiler`     ELM node -> closure compilation, per library, lazily; `ops/*` register node compilers
- `ops/`         one module per operator family (logical, arithmetic, comparison, dates, intervals,
                 lists, aggregates, queries, strings, types, clinical, structured, references, data)
- `engine`       `Engine`: libraries + terminology; per-patient evaluation contexts
- `context`      per-patient state (caches, alias frames, parameters, evaluated resources)
- `datetime`, `uncertainty`, `quantity`, `ucum`, `interval`, `clinical`, `tuples`: CQL values
- `compare`      equality, equivalence and ordering across all value types
- `model`        the FHIR R4 data model over raw JSON (typed nodes, choice types, primitives)
- `fhirhelpers`  native versions of the hot FHIRHelpers functions (identical results, tested)
- `terminology`  value sets from ValueSet resources as hash sets of (system, code)
- `retrieve`     the `DataSource` protocol, `RetrieveRequest`, and `InMemoryDataSource`
- `errors`       `UnsupportedElmError` (node type + library + locator), evaluation errors
"""

from fhirlead.cql.engine import Engine, call_function, evaluate_definition
from fhirlead.cql.errors import CqlError, CqlEvaluationError, ElmLoadError, UnsupportedElmError
from fhirlead.cql.library import ElmLibrary, LibrarySet, elm_from_library_resource
from fhirlead.cql.retrieve import DataSource, InMemoryDataSource, RetrieveRequest
from fhirlead.cql.terminology import Terminology

__all__ = [
    "CqlError",
    "CqlEvaluationError",
    "DataSource",
    "ElmLibrary",
    "ElmLoadError",
    "Engine",
    "InMemoryDataSource",
    "LibrarySet",
    "RetrieveRequest",
    "Terminology",
    "UnsupportedElmError",
    "call_function",
    "elm_from_library_resource",
    "evaluate_definition",
]
