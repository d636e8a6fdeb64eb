"""The operation table: every user-visible kernel entry the fuzzer and the corpus can run.

An operation is a generator function ``fn(k, **args)`` run as one scheduler task (a syscall, a
fault, a kernel thread's pass such as kswapd's reclaim).  Arguments are small integers of a
declared *kind*, so strategies can draw them generically and corpus files can name them:

=========  ==================================================================
kind       meaning (values the strategies draw)
=========  ==================================================================
mm         an mm id (``k.mms``); a missing or dead mm makes the op a no-op
addr       a virtual page number in ``[0, pages_per_mm)``
npages     a length in pages in ``[1, pages_per_mm]``
pfn        a frame number in ``[0, nr_frames)``
entry      a swap slot in ``[0, nr_swap)``
flag       0 or 1
count      a small repeat count in ``[1, 4]``
=========  ==================================================================

Operations must accept *any* values of their kinds (bad ones fail like the syscall would, with
an errno result), so that the fuzzer never has to reject a drawn case.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import attrs

KINDS = ("mm", "addr", "npages", "pfn", "entry", "flag", "count")


@attrs.frozen
class OpSpec:
    """One operation: its name, generator function, (argument, kind) pairs and doc line;
    ``destroys``, the kind of the argument whose object it tears down (exit: its mm), as a
    syscall description names a resource's destructor."""

    name: str
    fn: Callable[..., Generator[Any, None, Any]]
    params: tuple[tuple[str, str], ...]
    doc: str
    destroys: str | None = None


OPS: dict[str, OpSpec] = {}


def operation(
    name: str, *, destroys: str | None = None, **params: str
) -> Callable[[Callable[..., Generator[Any, None, Any]]], Callable[..., Generator[Any, None, Any]]]:
    """Register ``fn`` as operation ``name`` with argument kinds ``params`` (in order); with
    ``destroys``, it tears down the object named by its argument of that kind."""
    for arg, kind in params.items():
        if kind not in KINDS:
            raise ValueError(f"operation {name}: argument {arg} has unknown kind {kind!r}")
    if destroys is not None and destroys not in params.values():
        raise ValueError(f"operation {name}: destroys {destroys!r}, not one of its kinds")

    def register(
        fn: Callable[..., Generator[Any, None, Any]],
    ) -> Callable[..., Generator[Any, None, Any]]:
        if name in OPS:
            raise ValueError(f"operation {name} registered twice")
        doc = (fn.__doc__ or name).strip().splitlines()[0]
        OPS[name] = OpSpec(name, fn, tuple(params.items()), doc, destroys)
        return fn

    return register
