"""The events behind a violation, named the way KASAN names "freed by task ..." and KCSAN both
accesses: who freed the object used after free, which write was lost and who mapped or
overwrote the page, which steps last changed a count that no longer adds up.

The kernel records what each step did to each object (``Kernel.history``: ptes set and
cleared, page and swap_map counts, vma layouts, frees, user stores); :func:`explain` picks the
events that concern the objects a violation names.  It runs once, after a run ends in a
violation, so a run that holds costs only the recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from vmfuzz._scheduler import TraceStep
from vmfuzz.kernel.kernel import (
    BOOT_STEP,
    ENTRY,
    FREE,
    MM,
    PAGE,
    PTE_CLEAR,
    SET_PTE,
    SLOT,
    WRITE,
    Event,
    Kernel,
    where_text,
)
from vmfuzz.violation import Violation

Key = tuple[Any, ...]  # ("pte", mm id, addr) ("page", pfn) ("entry", e) ("mm", id) ("obj", desc)

COUNT_CHANGES = 3  # a count mismatch names the last this many changes of the count


@attrs.frozen
class Cause:
    """One event behind a violation: what it did (``role``: freed, lost write, mapped ...),
    by which task, at which step and label, in which kernel path."""

    role: str
    step: int
    task: str
    where: str
    what: str
    label: str = ""

    def describe(self) -> str:
        """``freed by T1 at step 19 (do_munmap (free_vma), at exit): frees vma1[0,1) of mm0``."""
        if self.step == BOOT_STEP:
            return f"{self.role} the world's building ({self.where}): {self.what}"
        at = f", at {self.label}" if self.label else ""
        return f"{self.role} {self.task} at step {self.step} ({self.where}{at}): {self.what}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role, "step": self.step, "task": self.task, "where": self.where,
            "what": self.what, "label": self.label,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cause:
        return cls(str(d.get("role", "")), int(d.get("step", 0)), str(d.get("task", "")),
                   str(d.get("where", "")), str(d.get("what", "")), str(d.get("label", "")))


# ----------------------------------------------------------------------------- objects
def _mm_id(v: Any) -> int | None:
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.startswith("mm") and v[2:].isdigit():
        return int(v[2:])
    return None


def violation_keys(v: Violation) -> list[Key]:
    """The objects a violation names, as history keys."""
    o = v.objects
    keys: list[Key] = []
    mm = _mm_id(o.get("mm"))
    if mm is not None and isinstance(o.get("addr"), int):
        keys.append(("pte", mm, o["addr"]))
    for pfn in [o.get("pfn"), *(o.get("pfns") or ())]:
        if isinstance(pfn, int):
            keys.append(("page", pfn))
    for e in [o.get("entry"), *(o.get("entries") or ())]:
        if isinstance(e, int):
            keys.append(("entry", e))
    for pte in o.get("ptes") or ():
        if isinstance(pte, (tuple, list)) and len(pte) == 2:
            keys.append(("pte", pte[0], pte[1]))
    if isinstance(o.get("object"), str):
        keys.append(("obj", o["object"]))
    if mm is not None:
        keys.append(("mm", mm))
    return list(dict.fromkeys(keys))


def event_keys(e: Event) -> tuple[Key, ...]:
    """The objects one history event touched."""
    kind, key, detail = e[3], e[4], e[5]
    if kind in (SET_PTE, PTE_CLEAR):
        out: list[Key] = [("pte", *key)]
        for val in detail:
            if val is not None:
                out.append(("entry", val[1]) if val[0] == 1 else ("page", val[1]))
        return tuple(out)
    if kind == PAGE:
        return (("page", key),)
    if kind == ENTRY:
        return (("entry", key),) if detail[1] is None else (("entry", key), ("page", detail[1]))
    if kind == MM:
        return (("mm", key),)
    if kind == FREE:
        return (("obj", key),)
    if kind == WRITE:
        return (("pte", *key), ("page", detail[1]))
    if kind == SLOT:
        return (("entry", key), ("page", detail[1]))
    return ()


# ----------------------------------------------------------------------------- wording
def pte_text(val: tuple[int, int, bool] | None) -> str:
    """A pte_value as a mail would write it."""
    if val is None:
        return "none"
    if val[0] == 1:
        return f"swap entry {val[1]}"
    if val[0] == 2:
        return f"migration entry of pfn {val[1]}"
    return f"pfn {val[1]}" + (" writable" if val[2] else "")


def _layout_text(layout: Sequence[tuple[int, int, int, int, int]]) -> str:
    return " ".join(f"vma{i}[{s},{e})" for i, s, e, _p, _f in layout) or "no vmas"


def event_text(e: Event, prev: Any = None) -> str:
    """What one event did, short enough for a diagram cell; ``prev`` is the detail of the
    previous event of the same object (for counts: "mapcount 1 -> 0")."""
    kind, key, detail = e[3], e[4], e[5]
    if kind == SET_PTE:
        was = f" (was {pte_text(detail[0])})" if detail[0] is not None else ""
        return f"set_pte mm{key[0]} page {key[1]} = {pte_text(detail[1])}{was}"
    if kind == PTE_CLEAR:
        return f"pte_clear mm{key[0]} page {key[1]} (was {pte_text(detail[0])})"
    if kind == FREE:
        return f"frees {key}"
    if kind == WRITE:
        return f"stores token {detail[0]} at mm{key[0]} page {key[1]} (pfn {detail[1]})"
    if kind == SLOT:
        return f"writes token {detail[0]} (pfn {detail[1]}) to swap slot {key}"
    if kind == PAGE:
        count = detail[0]
        if count == 0 and (prev is None or prev[0] != 0):
            return f"frees pfn {key}"
        if prev is not None and prev[0] == 0 and count:
            return f"allocates pfn {key}"
        parts = []
        for name, i in (("count", 0), ("mapcount", 1), ("token", 2)):
            if prev is None or prev[i] != detail[i]:
                parts.append(f"{name} {'' if prev is None else f'{prev[i]} -> '}{detail[i]}")
        return f"pfn {key} " + (", ".join(parts) or "touched")
    if kind == ENTRY:
        count, cached = detail
        parts = []
        if prev is None or prev[0] != count:
            parts.append(f"swap_map[{key}] {'' if prev is None else f'{prev[0]} -> '}{count}")
        if prev is not None and prev[1] != cached:
            parts.append(f"swap cache of entry {key}: " + (
                f"pfn {cached} added" if cached is not None else f"pfn {prev[1]} deleted"))
        return ", ".join(parts) or f"swap entry {key} touched"
    if kind == MM:
        return f"mm{key} vmas now {_layout_text(detail)}"
    return f"{kind} {key}"


def changed(e: Event, prev: Any) -> bool:
    """Whether the event changed what it records (a count, a layout, a cache slot); the first
    record of an object counts when it holds something."""
    return bool(e[5]) if prev is None else e[5] != prev


def previous_details(history: Sequence[Event]) -> list[Any]:
    """For each event, the detail of the previous event of the same kind and key (or None)."""
    last: dict[tuple[str, Any], Any] = {}
    out = []
    for e in history:
        k = (e[3], e[4])
        out.append(last.get(k))
        last[k] = e[5]
    return out


# ----------------------------------------------------------------------------- explain
class _Picker:
    """Builds causes from a run's history, each event at most once, in step order."""

    def __init__(self, k: Kernel, trace: Sequence[TraceStep]) -> None:
        self.history = k.events()
        self.prev = previous_details(self.history)
        self.trace = trace
        self.picked: dict[int, str] = {}  # history index -> role

    def add(self, index: int | None, role: str) -> None:
        if index is not None and index not in self.picked:
            self.picked[index] = role

    def last(self, kind: str | Iterable[str], key: Any, pred: Any = None,
             n: int = 1) -> list[int]:
        kinds = {kind} if isinstance(kind, str) else set(kind)
        out: list[int] = []
        for i in range(len(self.history) - 1, -1, -1):
            e = self.history[i]
            if e[3] in kinds and e[4] == key and (pred is None or pred(e, self.prev[i])):
                out.append(i)
                if len(out) == n:
                    break
        return out[::-1]

    def causes(self) -> list[Cause]:
        out = []
        for i in sorted(self.picked):
            e = self.history[i]
            step = e[0]
            label = ""
            if 0 <= step < len(self.trace) and self.trace[step].step == step:
                label = self.trace[step].label
            out.append(Cause(self.picked[i], step, e[1], where_text(e[2]),
                             event_text(e, self.prev[i]), label))
        return out


def _count_changed(e: Event, prev: Any) -> bool:
    return prev is None or e[5][:2] != prev[:2]


def _data_changed(e: Event, prev: Any) -> bool:
    return prev is None or e[5][2] != prev[2]


def _entry_count_changed(e: Event, prev: Any) -> bool:
    return prev is None or e[5][0] != prev[0]


def _cache_changed(e: Event, prev: Any) -> bool:
    return prev is not None and e[5][1] != prev[1]


def _freed_page(e: Event, prev: Any) -> bool:
    return e[5][0] == 0 and (prev is None or prev[0] != 0)


def explain(v: Violation, k: Kernel, trace: Sequence[TraceStep]) -> list[Cause]:
    """The events behind ``v`` in the run of ``k`` (``trace`` gives their labels)."""
    p = _Picker(k, trace)
    o = v.objects
    keys = violation_keys(v)
    for key in keys:
        if key[0] == "obj":
            for i in p.last(FREE, key[1]):
                p.add(i, "freed by")
    if v.check == "data_integrity":
        _explain_data(p, k, o, keys)
    for key in keys:
        if key[0] == "page":
            pfn = key[1]
            if v.check == "use_after_free":
                for i in p.last(PAGE, pfn, _freed_page):
                    p.add(i, "freed by")
            elif v.check == "swap_cache_unique":
                _cache_adds(p, pfn, {key[1] for key in keys if key[0] == "entry"})
            elif v.check in ("migration_pte_page_locked",):
                for i in _pte_users(p, pfn, kind=2, n=2):
                    p.add(i, "set by")
            elif v.check in ("rmap_reachable", "pte_in_vma"):
                for i in _pte_users(p, pfn, kind=0, n=1):
                    p.add(i, "mapped by")
            elif v.check != "data_integrity":
                for i in p.last(PAGE, pfn, _count_changed, COUNT_CHANGES):
                    p.add(i, "count changed by")
        elif key[0] == "entry":
            e = key[1]
            if v.check == "data_integrity":
                for i in p.last(SLOT, e):
                    p.add(i, "slot written by")
                for i in p.last(ENTRY, e, _cache_changed):
                    p.add(i, "swap cache changed by")
            elif v.check == "swap_cache_unique":
                for i in p.last(ENTRY, e, _cache_changed, 2):
                    p.add(i, "swap cache changed by")
            else:
                for i in p.last(ENTRY, e, _entry_count_changed, COUNT_CHANGES):
                    p.add(i, "swap_map changed by")
        elif key[0] == "pte" and v.check != "data_integrity":
            for i in p.last((SET_PTE, PTE_CLEAR), (key[1], key[2])):
                p.add(i, "pte changed by")
        elif key[0] == "mm" and v.check in ("rmap_reachable", "vma_list_sane", "pte_in_vma",
                                            "reserved_pte_cleared"):
            for i in p.last(MM, key[1], changed, 2):
                p.add(i, "vmas changed by")
    out = p.causes()
    if not out:
        out = _lock_causes(v, trace)
    return out


def _pte_users(p: _Picker, pfn: int, *, kind: int, n: int) -> list[int]:
    """The last ``n`` set_pte events that installed a pte of ``kind`` naming ``pfn``."""
    out: list[int] = []
    for i in range(len(p.history) - 1, -1, -1):
        e = p.history[i]
        if e[3] == SET_PTE and e[5][1][0] == kind and e[5][1][1] == pfn:
            out.append(i)
            if len(out) == n:
                break
    return out


def _cache_adds(p: _Picker, pfn: int, entries: set[int]) -> None:
    """The last insertions of ``pfn`` into the swap cache (under one of ``entries`` if the
    violation names any): two pages for one entry, or one page under two entries."""
    found = 0
    for i in range(len(p.history) - 1, -1, -1):
        e = p.history[i]
        prev = p.prev[i]
        if (e[3] == ENTRY and e[5][1] == pfn and prev is not None and prev[1] != pfn
                and (not entries or e[4] in entries)):
            p.add(i, "added to the swap cache by")
            found += 1
            if found == 2:
                break


def _explain_data(p: _Picker, k: Kernel, o: dict[str, Any], keys: list[Key]) -> None:
    """Lost or stale data: the store the reader should see, the store it sees instead (or
    the page it came from), and the step that mapped the page it reads."""
    pte = next((key for key in keys if key[0] == "pte"), None)
    if pte is None:
        return
    mm, addr = pte[1], pte[2]
    want, found = o.get("expected"), o.get("found")
    if want is None:
        want = k.expected.get(mm, {}).get(addr, 0)
    if want:
        for i in p.last(WRITE, (mm, addr), lambda e, _p: e[5][0] == want):
            p.add(i, "lost write:" if isinstance(found, int) and found < want
                  else "expected write:")
    if isinstance(found, int) and found:
        for i in range(len(p.history) - 1, -1, -1):
            e = p.history[i]
            if e[3] == WRITE and e[5][0] == found:
                p.add(i, "stale data from")
                break
    for i in p.last((SET_PTE,), (mm, addr)):
        p.add(i, "swapped out by" if p.history[i][5][1][0] == 1 else "mapped by")
    pfn = o.get("pfn")
    if isinstance(pfn, int):
        for i in p.last(PAGE, pfn, _data_changed):
            step = p.history[i][0]
            stored = any(p.history[j][0] == step and p.history[j][3] == WRITE
                         and p.history[j][5][1] == pfn for j in p.picked)
            if not stored:  # (a user store into the page is named already)
                p.add(i, "page data set by")


def _lock_causes(v: Violation, trace: Sequence[TraceStep]) -> list[Cause]:
    """For the engine's lock checks: the steps that last took or dropped the locks the
    violation names (or, with none named, the first retry round of a livelock)."""
    locks: list[str] = []
    o = v.objects
    if isinstance(o.get("lock"), str):
        locks.append(o["lock"])
    for chain in (o.get("old_chain"), o.get("new_chain")):
        for name in chain or ():
            if isinstance(name, str):
                locks.append(name)
    out: list[Cause] = []
    end = v.step if v.step is not None else len(trace)
    seen: set[int] = set()
    for cls in dict.fromkeys(c for c in locks if "->" not in c and "." not in c):
        # lockdep names lock classes ("mmap_sem"): the last acquisition of the class by each
        # task, from the yield labels ("swap_out_mm:down_write(mmap_sem)")
        tasks_seen: set[str] = set()
        for s in reversed(trace[:end + 1]):
            if s.label.endswith(f"({cls})") and s.task not in tasks_seen and s.step not in seen:
                tasks_seen.add(s.task)
                seen.add(s.step)
                part = next((x.strip() for x in s.event.split(";")
                             if x.strip().startswith(("takes ", "blocks on "))),
                            s.label.split(":")[-1])
                role = "waited for by" if part.startswith("blocks on") else "taken by"
                out.append(Cause(f"{cls} {role}", s.step, s.task, s.label.split(":")[0],
                                 part, s.label))
    for lock in dict.fromkeys(locks):
        for s in reversed(trace[:end]):
            ev = s.event
            hit = next((w for w in (f"unlock {lock}", f"takes {lock}", f"trylock {lock}")
                        if _names(ev, w)), None)
            if hit is not None:
                if s.step not in seen:
                    seen.add(s.step)
                    role = ("released by" if hit.startswith("unlock") else "taken by")
                    out.append(Cause(f"{lock} {role}", s.step, s.task, s.label.split(":")[0],
                                     hit, s.label))
                break
    if not out and v.check == "livelock":
        # the first collision: the failed trylock, and who took that lock before it
        for s in trace[:end]:
            failed = next((x.strip() for x in s.event.split(";")
                           if x.strip().startswith("trylock ") and x.strip().endswith(" failed")),
                          None)
            if failed is None:
                continue
            out.append(Cause("first failed trylock by", s.step, s.task,
                             s.label.split(":")[0], failed, s.label))
            lock = failed[len("trylock "):-len(" failed")]
            for h in reversed(trace[:s.step]):
                took = next((w for w in (f"takes {lock}", f"trylock {lock}")
                             if _names(h.event, w)), None)
                if took is not None:
                    out.append(Cause(f"{lock} taken by", h.step, h.task,
                                     h.label.split(":")[0], took, h.label))
                    break
            break
    return sorted(out, key=lambda c: c.step)


def _names(event: str, what: str) -> bool:
    """``what`` ("takes mm0->page_table_lock") is one of the ';'-separated lock events."""
    return any(part.strip() == what or part.strip().startswith(what + " ")
               or part.strip().endswith(", " + what) for part in event.split(";"))
