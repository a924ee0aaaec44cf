"""Operator families: each module registers compile functions for the ELM nodes it implements."""
