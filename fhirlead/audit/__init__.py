"""Audit: every FHIR interaction and authorization event recorded as an R4 AuditEvent.

The events are shaped after IHE Basic Audit Log Patterns (BALP, https://profiles.ihe.net/ITI/BALP/)
on R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html). One job per module:

- `codes`: the code systems and codings (audit-event-type, restful-interaction, DICOM, object-role, …);
- `event`: builds the AuditEvent JSON (agents, source, entities, outcome);
- `exchange`: decides what one HTTP exchange did and touched (subtype, action, resources, patient, query);
- `trail`: `AuditTrail`, the non-blocking recorder with its bounded queue and batched background writer.

AuditEvents are read only by an admin user or a `system/` scope (`fhirlead.auth.enforce`). No token,
password or secret reaches an AuditEvent; query strings go only into AuditEvents, never into logs.
"""

from fhirlead.audit.trail import AuditTrail

__all__ = ["AuditTrail"]
