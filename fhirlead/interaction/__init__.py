"""One module per FHIR RESTful interaction (https://hl7.org/fhir/R4/http.html), Blaze-style.

Write interactions take a unit of work so that the same code serves a single HTTP request and an
entry of a batch or transaction Bundle; they return an `Outcome`, which `respond` renders for HTTP and
the Bundle processor renders as a response entry.
"""
