"""Hypothesis strategies and rule-based state machines (installed as ``vmfuzz.strategies``)."""
