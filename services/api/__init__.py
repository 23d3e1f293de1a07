"""The HTTP API (SPEC §9): reads the consumers' documents, sends consultants' commands."""
