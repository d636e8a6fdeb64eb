"""Programs as the engine sees them: which page or frame an operation acts on, and how to aim
it elsewhere; the range of each argument kind.  Generic over the operation table (no
Hypothesis here): the strategies draw with these facts, the pool mutates with them and the
shrinker varies arguments with them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmfuzz.case import OpCall
from vmfuzz.kernel import OPS, Kernel, KernelConfig
from vmfuzz.kernel.mm_types import PresentPte


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


def objects_of(events: Iterable[Any]) -> tuple[list[tuple[int, int | None]], list[int]]:
    """The objects a run's tasks worked on, from its data events (``Kernel.history``), in
    order of first touch, each once: the (mm, addr) of every pte set or cleared (the owners
    of a frame being migrated or reclaimed, the pages an mlock populates, the child a fork
    fills, the ptes of a swap entry) with (mm, None) for every mm whose vmas changed; and the
    frame of every page whose counts changed.  What an operation may be aimed at next to
    the operations in flight, not only at the pages the program named."""
    targets: dict[tuple[int, int | None], None] = {}
    frames: dict[int, None] = {}
    for e in events:
        kind = e[3]
        if kind in ("set_pte", "pte_clear"):
            targets[e[4]] = None
        elif kind == "mm":
            targets[(e[4], None)] = None
        elif kind == "page":
            frames[e[4]] = None
    return list(targets), list(frames)


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
