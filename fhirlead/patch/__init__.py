"""Patch formats the server applies: JSON Patch (RFC 6902) and FHIRPath Patch."""
