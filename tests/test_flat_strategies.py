"""The compiled strategies (:mod:`vmfuzz.strategies._flat`) draw exactly as Hypothesis's own.

Each of the fuzzer's composed strategies is drawn from the same random source, and replayed from
the same choices with a value hole in place of each span (the shrinker's re-encoding pass), both
as given and compiled: the values, the choices with their constraints, every span (label, extent,
discard, recorded value), the argument spans and the coverage tags must be the same.  That is
what a campaign's examples are derived from.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.control import BuildContext
from hypothesis.errors import StopTest
from hypothesis.internal.conjecture.choice import ValueHole
from hypothesis.internal.conjecture.data import ConjectureData
from vmfuzz.strategies import _flat
from vmfuzz.strategies.operations import _op_call, _op_calls, swarm, worlds
from vmfuzz.strategies.schedules import pct_params, preemption_batches

from vmfuzz.kernel import OPS, KernelConfig

pytestmark = pytest.mark.skipif(not _flat.ENABLED, reason="not the verified Hypothesis")


def _plain(s: Any) -> Any:
    return s.orig if isinstance(s, _flat.FlatStrategy) else s


def _op_calls_plain(config: KernelConfig, enabled: tuple[str, ...]) -> Any:
    """The operations' one_of as Hypothesis builds it from the operations' strategies."""
    return st.one_of([_plain(_op_call(config, n)) for n in enabled])


def _cases() -> dict[str, tuple[Any, Any]]:
    """name -> (compiled, composed)."""
    names = tuple(sorted(OPS))
    out = {}
    for name, config, enabled in [("op_calls(all)", KernelConfig(), names),
                                  ("op_calls(3)", KernelConfig().scaled(4), names[::6]),
                                  ("op_calls(1)", KernelConfig(), names[:1])]:
        out[name] = (_op_calls(config, enabled), _op_calls_plain(config, enabled))
    for name, s in [("swarm", swarm()), ("worlds", worlds()), ("pct_params", pct_params()),
                    ("preemption_batches", preemption_batches())]:
        out[name] = (s, _plain(s))
    return out


def _record(data: ConjectureData, strategy: Any, nested: bool) -> tuple[Any, ...]:
    # The spans are read inside the build context, the value dropped: a recorded value is a
    # weak reference, alive as long as something (the context's printers) holds the value.
    with BuildContext(data, wrapped_test=_record):
        try:
            value = repr(data.draw(st.tuples(strategy) if nested else strategy))
        except StopTest:
            value = "<stopped>"
        data.freeze()
        spans = tuple(
            (s.label, s.start, s.end, s.depth, s.discarded, s.parent, _deref(s.recorded_value))
            for s in data.spans
        )
    nodes = tuple((n.type, n.value, repr(n.constraints), n.was_forced) for n in data.nodes)
    return (value, data.status, nodes, spans, sorted(data.arg_spans),
            sorted(repr(t) for t in data.tags), data.has_discards)


def _deref(v: Any) -> Any:
    return repr(v() if callable(v) and type(v).__name__ == "ReferenceType" else v)


@pytest.mark.parametrize("name", list(_cases()))
@pytest.mark.parametrize("nested", [False, True])
def test_compiled_draws_as_composed(name: str, nested: bool) -> None:
    s, plain = _cases()[name]
    assert isinstance(s, _flat.FlatStrategy), "the fuzzer's strategy is compiled"
    assert s.label == plain.label
    holes = 0
    for seed in range(60):
        a = _record(ConjectureData(random=random.Random(seed)), plain, nested)
        b = _record(ConjectureData(random=random.Random(seed)), s, nested)
        assert a == b, (name, seed)
        # Replays: the choices as drawn, and with each span's choices replaced by a value hole
        # carrying its recorded value (what the shrinker's widening pass proposes).
        data = ConjectureData(random=random.Random(seed))
        try:
            with BuildContext(data, wrapped_test=_record):
                data.draw(plain)
        except StopTest:
            continue
        data.freeze()
        choices = tuple(n.value for n in data.nodes)
        prefixes: list[tuple[Any, ...]] = [choices]
        for span in data.spans:
            rv = span.recorded_value
            if type(rv).__name__ == "ReferenceType":
                rv = rv()
            if span.choice_count > 1 and rv is not None and span.start < len(choices):
                prefixes.append((*choices[:span.start], ValueHole(rv), *choices[span.end:]))
        holes += len(prefixes) - 1
        for p in prefixes:
            a = _record(ConjectureData(random=random.Random(seed), prefix=p), plain, nested)
            b = _record(ConjectureData(random=random.Random(seed), prefix=p), s, nested)
            assert a == b, (name, seed, p)
    if name not in ("worlds", "op_calls(1)"):
        assert holes, "the replays covered value holes"


def test_unverified_hypothesis_draws_the_original(monkeypatch: pytest.MonkeyPatch) -> None:
    s = st.tuples(st.integers(0, 3), st.booleans())
    monkeypatch.setattr(_flat, "ENABLED", False)
    assert _flat.flat(s) is s
