"""The language of the system: every message that crosses a process boundary.

One module per message family; each type carries the exact field names of SPEC.md and validates
itself when decoded, so that nothing past the edge has to doubt its input.
"""
