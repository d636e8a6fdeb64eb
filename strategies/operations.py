"""Hypothesis strategies for kernel operations, generic over the operation table.

Arguments are drawn by *kind* (see :mod:`vmfuzz.kernel.ops`), never by operation: the
strategies know nothing about any specific path or bug.  Swarm testing (Groce et al., ISSTA 2012)
draws which operations are enabled for a whole example, so rare combinations get room.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from vmfuzz.case import OpCall
from vmfuzz.kernel import OPS, KernelConfig


def kind_values(kind: str, config: KernelConfig) -> st.SearchStrategy[int]:
    """Values of one argument kind for a kernel of ``config``'s sizes."""
    if kind == "mm":
        return st.integers(0, config.nr_mms)  # one past the initial mms: a forked child
    if kind == "addr":
        return st.integers(0, config.pages_per_mm - 1)
    if kind == "npages":
        return st.one_of(st.integers(1, 3), st.integers(1, config.pages_per_mm))
    if kind == "pfn":
        return st.integers(0, config.nr_frames - 1)
    if kind == "entry":
        return st.integers(0, config.nr_swap - 1)
    if kind == "flag":
        return st.integers(0, 1)
    if kind == "count":
        return st.integers(1, 4)
    raise ValueError(f"unknown argument kind {kind!r}")


def op_calls(config: KernelConfig, enabled: list[str]) -> st.SearchStrategy[OpCall]:
    """One operation among ``enabled``, with arguments drawn by kind."""
    return _op_calls(config, tuple(enabled))


@functools.lru_cache(maxsize=256)
def _op_calls(config: KernelConfig, enabled: tuple[str, ...]) -> st.SearchStrategy[OpCall]:

    def with_args(name: str) -> st.SearchStrategy[OpCall]:
        params = OPS[name].params
        args = st.fixed_dictionaries({a: kind_values(kind, config) for a, kind in params})
        return args.map(lambda a: OpCall(name, a))

    return st.sampled_from(sorted(enabled)).flatmap(with_args)


def swarm(ops: list[str] | None = None) -> st.SearchStrategy[list[str]]:
    """All operations, or (half the time) a random subset, each op kept with probability 1/2.

    Shrinks towards "all enabled", so a minimal failure never depends on the subset drawn.
    """
    names = sorted(ops if ops is not None else OPS)
    subset = st.lists(st.booleans(), min_size=len(names), max_size=len(names)).map(
        lambda keep: [n for n, k in zip(names, keep, strict=True) if k] or names
    )
    return st.one_of(st.just(names), subset)
