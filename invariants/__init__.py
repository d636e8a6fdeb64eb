"""Invariant modules, one family per module (installed as ``vmfuzz.invariants``)."""
