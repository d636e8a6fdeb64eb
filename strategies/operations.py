"""Hypothesis strategies for kernel operations, generic over the operation table.

Arguments are drawn by *kind* (see :mod:`vmfuzz.kernel.ops`), never by operation: the
strategies know nothing about any specific path or bug.  Swarm testing (Groce et al., ISSTA 2012)
draws which operations are enabled for a whole example, so rare combinations get room.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st
from vmfuzz.strategies._flat import flat, one_of

from vmfuzz.case import OpCall
from vmfuzz.kernel import OPS, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.program import kind_bounds, kind_hot


def _biased(lo: int, hot: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi], half of them in [lo, hot]: ONE primitive draw (draws cost ~70 us
    each, more than a model step), shrinking towards ``lo``."""
    hot_n = hot - lo + 1
    span = hi - lo + 1
    return st.integers(0, 2 * span - 1).map(
        lambda v: lo + (v % hot_n if v < span else v - span)
    )


def kind_values(kind: str, config: KernelConfig) -> st.SearchStrategy[int]:
    """Values of one argument kind for a kernel of ``config``'s sizes."""
    lo, hi = kind_bounds(kind, config)
    hot = kind_hot(kind, config)
    if hot == hi:
        return st.integers(lo, hi)
    return _biased(lo, hot, hi)


def op_calls(config: KernelConfig, enabled: list[str]) -> st.SearchStrategy[OpCall]:
    """One operation among ``enabled``, with arguments drawn by kind."""
    return _op_calls(config, tuple(enabled))


@functools.lru_cache(maxsize=256)
def _op_calls(config: KernelConfig, enabled: tuple[str, ...]) -> st.SearchStrategy[OpCall]:

    # A one_of of fixed per-operation strategies, built once per (config, enabled): a flatmap
    # would build and validate a new strategy on every draw, which dominates a fuzz run.
    # Compiled (drawn as st.one_of of them is) from the operations' compiled strategies.
    return one_of([_op_call(config, name) for name in sorted(enabled)])


@functools.lru_cache(maxsize=1024)
def _op_call(config: KernelConfig, name: str) -> st.SearchStrategy[OpCall]:
    params = OPS[name].params
    args = st.tuples(*(kind_values(kind, config) for _, kind in params))
    names = tuple(a for a, _ in params)
    return flat(args.map(lambda vals: OpCall(name, dict(zip(names, vals, strict=True)))))


def swarm(ops: list[str] | None = None) -> st.SearchStrategy[list[str]]:
    """All operations, or (half the time) a random subset, each op kept with probability 1/2.

    Shrinks towards "all enabled", so a minimal failure never depends on the subset drawn.
    (Small subsets of 2..5 operations were tried and found fewer bugs: 3 of 20 campaigns
    against 8 of 20, at 1,500 examples, on two races of three operations.)
    """
    names = sorted(ops if ops is not None else OPS)
    subset = st.lists(st.booleans(), min_size=len(names), max_size=len(names)).map(
        lambda keep: [n for n, k in zip(names, keep, strict=True) if k] or names
    )
    return flat(st.one_of(st.just(names), subset))


def worlds() -> st.SearchStrategy[frozenset[str]]:
    """The world features a run starts from (:mod:`vmfuzz.kernel.boot`), each in half the
    examples: ONE draw (a bitmask), shrinking towards the bare boot vmas."""
    n = len(WORLD_FEATURES)
    return flat(st.integers(0, (1 << n) - 1).map(
        lambda bits: frozenset(f for i, f in enumerate(WORLD_FEATURES) if bits >> i & 1)
    ))
