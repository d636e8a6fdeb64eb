"""Object-sensitive interleaving coverage: which kernel paths of two tasks met on one object.

A label pair (where one task stood, what another ran) cannot tell two tasks on unrelated mms
from two tasks on one pte.  KRACE's alias coverage (Xu et al., S&P 2020) and Snowboard's
potential memory communication (Gong et al., SOSP 2021) key the signal by the memory both sides
touched instead.  Here an *access* is what the run already records: every data event of
``Kernel.history`` (a pte set or cleared, a user store, a page's counts, a swap entry's count or
cache slot, an mm's vmas: all writes) and every lock request of the trace (the lock instance is
the object; a read-side request, ``down_read``, is a read).  An *alias pair* is two accesses in a
row to one object by different tasks, one of them a write, named by the object's class and both
sides' kernel paths and directions, never by the object's id: the pair says that these two
paths met on one object, whichever object it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# ``Kernel.history`` event kind -> the class of object its key names.
_CLASS = {"set_pte": "pte", "pte_clear": "pte", "write": "pte", "page": "page",
          "entry": "entry", "mm": "mm"}
_LOCK_EVENTS = ("takes ", "blocks on ", "trylock ")
PREFIX = "@"  # an alias pair's first half starts with this (a label never does)


def alias_pairs(trace: Sequence[Any], events: Iterable[Any]) -> set[tuple[str, str]]:
    """The alias pairs of one run: ``("@CLASS SITE DIR", "SITE DIR")`` for every access (data
    event or lock request) to an object whose previous access was another task's, one of the
    two a write (``DIR`` "r" or "w")."""
    last: dict[Any, tuple[str, str]] = {}  # object -> (task, "SITE DIR") of its last access
    out: set[tuple[str, str]] = set()

    def access(obj: Any, cls: str, task: str, site: str, write: bool) -> None:
        here = f"{site} {'w' if write else 'r'}"
        prev = last.get(obj)
        if prev is not None and prev[0] != task and (write or prev[1][-1] == "w"):
            out.add((f"{PREFIX}{cls} {prev[1]}", here))
        last[obj] = (task, here)

    it = iter(events)
    ev = next(it, None)
    for s in trace:
        step = s.step
        while ev is not None and ev[0] <= step:  # the step's data events come before its yield
            cls = _CLASS.get(ev[3])
            if cls is not None:
                access((cls, ev[4]), cls, ev[1], ev[2][0], True)
            ev = next(it, None)
        event = s.event
        if not event:
            continue
        for part in event.split("; "):
            for head in _LOCK_EVENTS:
                at = part.find(head)
                if at >= 0:
                    name = part[at + len(head):].removesuffix(" failed")
                    label = s.label
                    access(("lock", name), "lock", s.task, label, "_read" not in label)
                    break
    return out


def reused(events: Sequence[Any], aba: Iterable[tuple[int, int, int, int, int]]) -> list[bool]:
    """For each pte ABA of a run (``Kernel.pte_aba``: step, mm, addr, kind, since), whether the
    object its restored value names was freed and reused between ``since`` and ``step``: a
    frame freed (the same pfn, other data), or a swap slot freed and given to another page (its
    swap-cache page then differs from the one it had at ``since``).  That is the classic ABA,
    a value that came back naming other data; in the common one a swap-cache page is mapped
    and unmapped again, or a slot freed is given back to the same page."""
    aba = list(aba)
    if not aba:
        return []
    put: dict[tuple[int, Any], Any] = {}  # (step, (mm, addr)) -> value set then
    freed: dict[tuple[str, Any], list[int]] = {}  # (class, id) -> steps it was freed at
    cached: dict[Any, list[tuple[int, Any]]] = {}  # entry -> (step, swap-cache pfn) changes
    for e in events:
        kind = e[3]
        if kind == "set_pte":
            put[(e[0], e[4])] = e[5][1]
        elif kind == "page" and e[5][0] == 0:
            freed.setdefault(("page", e[4]), []).append(e[0])
        elif kind == "entry":
            cached.setdefault(e[4], []).append((e[0], e[5][1]))
            if not e[5][0]:
                freed.setdefault(("entry", e[4]), []).append(e[0])

    def cache_at(entry: Any, step: int) -> Any:
        return next((pfn for at, pfn in reversed(cached.get(entry, ())) if at <= step), None)

    out = []
    for step, mm, addr, _kind, since in aba:
        value = put.get((step, (mm, addr)))
        if value is None:
            out.append(False)
            continue
        swap = value[0] == 1
        obj = ("entry" if swap else "page", value[1])
        gone = any(since <= at <= step for at in freed.get(obj, ()))
        out.append(gone and (not swap or cache_at(value[1], since) != cache_at(value[1], step)))
    return out
