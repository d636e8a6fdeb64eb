"""Hypothesis strategies for kernel operations, generic over the operation table.

Arguments are drawn by *kind* (see :mod:`vmfuzz.kernel.ops`), never by operation: the
strategies know nothing about any specific path or bug.  Swarm testing (Groce et al., ISSTA 2012)
draws which operations are enabled for a whole example, so rare combinations get room.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from hypothesis import strategies as st

from vmfuzz.case import OpCall
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.boot import WORLD_FEATURES
from vmfuzz.kernel.mm_types import PresentPte


def _biased(lo: int, hot: int, hi: int) -> st.SearchStrategy[int]:
    """Integers in [lo, hi], half of them in [lo, hot]: ONE primitive draw (draws cost ~70 us
    each, more than a model step), shrinking towards ``lo``."""
    hot_n = hot - lo + 1
    span = hi - lo + 1
    return st.integers(0, 2 * span - 1).map(
        lambda v: lo + (v % hot_n if v < span else v - span)
    )


def kind_bounds(kind: str, config: KernelConfig) -> tuple[int, int]:
    """The smallest and largest value of one argument kind for a kernel of ``config``'s
    sizes (mm reaches one past the initial mms: the first forked child)."""
    bounds = {
        "mm": (0, config.nr_mms),
        "addr": (0, config.pages_per_mm - 1),
        "npages": (1, config.pages_per_mm),
        "pfn": (0, config.nr_frames - 1),
        "entry": (0, config.nr_swap - 1),
        "flag": (0, 1),
        "count": (1, 4),
    }
    if kind not in bounds:
        raise ValueError(f"unknown argument kind {kind!r}")
    return bounds[kind]


def kind_hot(kind: str, config: KernelConfig) -> int:
    """The top of one argument kind's *hot* range: half the values drawn fall in
    [smallest, hot].  Half the mm draws hit mm 0, so operations of one process meet;
    small-scope bias for addresses (the first pages) and lengths, so independent operations
    often meet on the same page (races need that), yet every value is reachable."""
    lo, hi = kind_bounds(kind, config)
    return {"mm": lo, "addr": min(hi, 3), "npages": min(hi, 4)}.get(kind, hi)


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
    return st.one_of([_op_call(config, name) for name in sorted(enabled)])


@functools.lru_cache(maxsize=1024)
def _op_call(config: KernelConfig, name: str) -> st.SearchStrategy[OpCall]:
    params = OPS[name].params
    args = st.tuples(*(kind_values(kind, config) for _, kind in params))
    names = tuple(a for a, _ in params)
    return args.map(lambda vals: OpCall(name, dict(zip(names, vals, strict=True))))


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
    return st.one_of(st.just(names), subset)


def worlds() -> st.SearchStrategy[frozenset[str]]:
    """The world features a run starts from (:mod:`vmfuzz.kernel.boot`), each in half the
    examples: ONE draw (a bitmask), shrinking towards the bare boot vmas."""
    n = len(WORLD_FEATURES)
    return st.integers(0, (1 << n) - 1).map(
        lambda bits: frozenset(f for i, f in enumerate(WORLD_FEATURES) if bits >> i & 1)
    )


def target_of(call: OpCall) -> tuple[int, int | None] | None:
    """The (mm, addr) an operation acts on, if it takes an mm (addr None if it takes none)."""
    mm = call.args.get("mm")
    if mm is None or OPS[call.op].params[0][1] != "mm":
        return None
    addr = next((call.args[a] for a, kind in OPS[call.op].params if kind == "addr"), None)
    return mm, addr


def frames_at(k: Kernel, targets: Iterable[tuple[int, int | None]]) -> list[int]:
    """The frames mapped (present ptes) at ``targets`` in ``k`` now, in order, each once: what
    a pfn-kind argument is aimed at (a page the program or the world uses, not a free frame)."""
    out: dict[int, None] = {}
    for mm_id, addr in targets:
        mm = k.mms.get(mm_id)
        pte = mm.pgd.get(addr) if mm is not None and addr is not None else None
        if isinstance(pte, PresentPte):
            out[pte.pfn] = None
    return list(out)


def takes_frame(call: OpCall) -> bool:
    """True if ``call`` has a pfn-kind argument (migrate: it acts on a frame, not a page)."""
    return any(kind == "pfn" for _, kind in OPS[call.op].params)


def aim_frame(call: OpCall, pfn: int) -> OpCall:
    """``call`` with its pfn-kind arguments set to ``pfn``."""
    return OpCall(call.op, {a: pfn if kind == "pfn" else call.args[a]
                            for a, kind in OPS[call.op].params})


def retarget(call: OpCall, target: tuple[int, int | None]) -> OpCall:
    """``call`` aimed at an earlier operation's (mm, addr): its mm-kind argument, and its
    addr-kind argument when both have one, replaced (a generic "reuse a resource" mutation, as
    syzkaller reuses resources: races need two operations on the same page)."""
    mm, addr = target
    args = dict(call.args)
    for a, kind in OPS[call.op].params:
        if kind == "mm":
            args[a] = mm
        elif kind == "addr" and addr is not None:
            args[a] = addr
    return OpCall(call.op, args)
