"""Batch and transaction Bundles (https://hl7.org/fhir/R4/http.html#transaction).

- `entries`: reading a Bundle's entries into requests, with errors that name the entry.
- `references`: placeholder (`urn:uuid:`, `urn:oid:`, fullUrl) and conditional reference resolution.
- `transaction`: all-or-nothing processing in one unit of work.
- `batch`: independent processing, each entry through the ordinary HTTP interaction path.
- `response`: the batch-response / transaction-response Bundle.
"""
