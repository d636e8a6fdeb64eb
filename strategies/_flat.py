"""A strategy drawn with the choices and spans of Hypothesis's own combinators, in one call.

A composed strategy (``one_of`` of ``tuples(...).map(...)``, ``lists(...)``) costs an example
more in the layers that compose it than in its choices: each layer is a ``ConjectureData.draw``
(validation, unwrapping, the inversion hook, a span), and ``map`` and ``tuples`` add a warnings
context, a call record for printing and a context manager per element.  :func:`flat` compiles
such a strategy into one that makes the same choices under the same constraints and opens,
labels and closes the same spans with the same recorded values, so everything Hypothesis derives
from them (the data tree, the mutator's span groups, the shrinker's passes) is the same: a seed
draws the same examples.  What ``map`` and ``tuples`` record for printing an example is recorded
too: it keeps the values alive, and the spans hold their values by weak reference.

Where the draw would differ from the plain one (a value hole to re-encode at the next choice, a
nesting too deep) it draws the original strategy there, as Hypothesis would.  It depends on the
internals of the Hypothesis version it was written against: on any other it returns the original
strategy unchanged, and ``tests/test_flat_strategies.py`` compares the two draw for draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import hypothesis
from hypothesis.control import current_build_context
from hypothesis.internal.conjecture import utils as cu
from hypothesis.internal.conjecture.choice import ValueHole
from hypothesis.internal.conjecture.data import MAX_DEPTH, ConjectureData
from hypothesis.internal.conjecture.utils import combine_labels
from hypothesis.strategies import SearchStrategy
from hypothesis.strategies import one_of as st_one_of
from hypothesis.strategies._internal.collections import (
    ListStrategy,
    TupleStrategy,
    _tuple_pprinter,
)
from hypothesis.strategies._internal.lazy import unwrap_strategies
from hypothesis.strategies._internal.strategies import (
    MAPPED_SEARCH_STRATEGY_DO_DRAW_LABEL,
    MappedStrategy,
    OneOfStrategy,
    SampledFromStrategy,
)
from hypothesis.vendor.pretty import IDKey

# The Hypothesis release whose ConjectureData.draw, MappedStrategy, TupleStrategy,
# OneOfStrategy and ListStrategy the bodies below replay step for step.
VERIFIED = "6.170.27"
ENABLED = hypothesis.__version__ == VERIFIED

_Body = Callable[[ConjectureData], Any]


class _Node:
    """One layer: the strategy Hypothesis would draw there, its span label, its do_draw."""

    __slots__ = ("body", "label", "orig")

    def __init__(self, orig: SearchStrategy[Any], label: int, body: _Body) -> None:
        self.orig = orig
        self.label = label
        self.body = body


def _draw(data: ConjectureData, node: _Node) -> Any:
    """``data.draw(node.orig)`` below the top level: a span labelled as the strategy's, the
    value recorded for it; the original draw where a value hole or the depth limit is next."""
    prefix = data.prefix
    if data.depth >= MAX_DEPTH or (
        prefix is not None and data.index < len(prefix)
        and isinstance(prefix[data.index], ValueHole)
    ):
        return data.draw(node.orig)
    record = data._ConjectureData__span_record  # type: ignore[attr-defined]
    index = record.span_count
    data.start_span(node.label)
    try:
        value = node.body(data)
        record.record_value_for_span(index, value)
        return value
    finally:
        data.stop_span()


def _mapped(s: MappedStrategy[Any, Any]) -> _Body:
    inner = _compile(s.mapped_strategy)
    pack = s.pack

    def body(data: ConjectureData) -> Any:
        # MappedStrategy.do_draw's first attempt (nothing here rejects, so the only one).
        data.start_span(MAPPED_SEARCH_STRATEGY_DO_DRAW_LABEL)
        try:
            x = _draw(data, inner)
            result = pack(x)
        finally:
            data.stop_span(discard=False)
        # The call record holds the value and its argument for as long as the build context
        # lives: a span's recorded value is a weak reference, which the shrinker reads.
        current_build_context().record_call(result, pack, args=[x], kwargs={})
        return result
    return body


def _tuple(s: TupleStrategy) -> _Body:
    elements = tuple(_compile(e) for e in s.element_strategies)

    def body(data: ConjectureData) -> Any:
        record = data._ConjectureData__span_record  # type: ignore[attr-defined]
        out = []
        labels = {}
        for i, e in enumerate(elements):
            index = record.span_count
            out.append(_draw(data, e))
            data.arg_spans.add(index)  # track_arg_label: the explain phase reads it
            labels[f"arg[{i}]"] = index
        result = tuple(out)
        if labels:  # the printer TupleStrategy.do_draw records (it holds the value too)
            current_build_context().known_object_printers[IDKey(result)].append(
                _tuple_pprinter(labels))
        return result
    return body


def _one_of(s: OneOfStrategy[Any]) -> _Body:
    branches = list(s.element_strategies)
    if len(branches) == 1:
        only = _compile(branches[0])
        return lambda data: _draw(data, only)
    if any(type(b).is_currently_empty is not SearchStrategy.is_currently_empty
           for b in branches):
        raise _Unsupported  # the filtered sampler path
    return _pick(branches, [_compile(b) for b in branches])


def _pick(branches: Sequence[SearchStrategy[Any]], nodes: Sequence[_Node]) -> _Body:
    """OneOfStrategy.do_draw: a branch from its sampler, then a draw of that branch."""
    sampler = SampledFromStrategy(list(branches))
    pick = _Node(sampler, sampler.label, sampler.do_draw)
    compiled = {id(b): n for b, n in zip(branches, nodes, strict=True)}

    def body(data: ConjectureData) -> Any:
        return _draw(data, compiled[id(_draw(data, pick))])
    return body


def _list(s: ListStrategy[Any]) -> _Body:
    element = _compile(s.element_strategy)
    if s.element_strategy.is_empty:
        raise _Unsupported
    lo, hi, avg = s.min_size, s.max_size, s.average_size

    def body(data: ConjectureData) -> Any:
        with cu.many(data, min_size=lo, max_size=hi, average_size=avg) as elements:
            return [_draw(data, element) for _ in elements]
    return body


class _Unsupported(Exception):
    pass


def _compile(s: SearchStrategy[Any]) -> _Node:
    u = unwrap_strategies(s)
    u.validate()
    t = type(u)
    body: _Body
    if t is MappedStrategy:
        body = _mapped(u)
    elif t is TupleStrategy:
        body = _tuple(u)
    elif t is OneOfStrategy:
        body = _one_of(u)
    elif t is ListStrategy:
        body = _list(u)
    else:  # a leaf (integers, booleans, just, sampled_from): its own do_draw
        body = u.do_draw
    return _Node(s, u.label, body)


class FlatStrategy(SearchStrategy[Any]):
    """``orig`` drawn by its compiled layers (:func:`flat`, :func:`one_of`)."""

    def __init__(self, orig: SearchStrategy[Any], node: _Node,
                 parts: Sequence[SearchStrategy[Any]] = ()) -> None:
        super().__init__()
        self.orig = orig
        self.node = node
        self._body = node.body
        self._label = node.label
        self._parts = parts  # what to validate instead of orig, when built from parts

    def calc_label(self) -> int:
        return self._label

    def do_validate(self) -> None:
        for p in self._parts or (self.orig,):
            p.validate()

    def calc_is_empty(self, recur: Any) -> bool:
        return all(recur(p) for p in self._parts) if self._parts else bool(recur(self.orig))

    def do_draw(self, data: ConjectureData) -> Any:
        return self._body(data)

    def _invert(self, value: Any) -> Any:
        return unwrap_strategies(self.orig)._invert(value)

    def __repr__(self) -> str:
        return repr(self.orig)


def flat(s: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """``s`` as one layer that draws exactly as ``s`` does (module doc), or ``s`` itself if
    this Hypothesis is not the verified one or ``s`` holds a layer it cannot replay."""
    if not ENABLED:
        return s
    try:
        node = _compile(s)
    except _Unsupported:
        return s
    return FlatStrategy(s, node)


_ONE_OF_LABEL = OneOfStrategy([]).class_label


def one_of(parts: Sequence[SearchStrategy[Any]]) -> SearchStrategy[Any]:
    """``st.one_of(parts)`` compiled, built from compiled parts (:func:`flat`) without
    building or validating a strategy per call (a swarm draws a new subset of operations in
    half the examples).  The parts must be non-empty and distinct, each its own only branch
    (a map of a tuple: what OneOfStrategy would see as its element strategies)."""
    flats = [p for p in parts if isinstance(p, FlatStrategy)]
    if not ENABLED or len(flats) < len(parts):
        return st_one_of([p.orig if isinstance(p, FlatStrategy) else p for p in parts])
    if len(flats) == 1:
        return flats[0]
    origs = [p.orig for p in flats]
    orig = OneOfStrategy(origs)  # drawn (and validated) only where a draw falls back to it
    label = combine_labels(_ONE_OF_LABEL, *(p.label for p in flats))
    node = _Node(orig, label, _pick(origs, [p.node for p in flats]))
    return FlatStrategy(orig, node, flats)
