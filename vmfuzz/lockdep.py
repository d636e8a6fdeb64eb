"""Lockdep-style potential-deadlock detection over lock *classes*, kept across a whole campaign.

Every time a task requests lock class B while holding class A, the edge A -> B is recorded with a
witness (task, where A was taken, where B is requested).  A new edge that closes a cycle is an
inversion: reported at acquire time with both witness chains, whether or not the deadlock would
happen in this run (as kernel/lockdep.c's check_noncircular does).  Same-class nesting is not
recorded (the kernel annotates it with *_nested); the BKL is never tracked (lockdep never did).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz._locks import Lock
    from vmfuzz._scheduler import Task


@attrs.frozen
class Witness:
    """Where an edge A -> B was first seen."""

    task: str
    held_at: str
    acquired_at: str

    def describe(self, a: str, b: str) -> str:
        return f"{self.task}: holds {a} (taken at {self.held_at}), takes {b} at {self.acquired_at}"


@attrs.define
class LockDep:
    """The class-order graph: ``edges[a][b]`` is the witness for "b taken while holding a"."""

    edges: dict[str, dict[str, Witness]] = attrs.field(factory=dict)
    # Where each held lock was taken, keyed by (task id, lock name).
    _taken_at: dict[tuple[int, str], str] = attrs.field(factory=dict)

    def acquire(self, task: Task, lock: Lock, label: str) -> None:
        """Record the edges for ``task`` requesting ``lock``; raise on a new inversion."""
        new = lock.cls
        edges = self.edges
        for held, _ in task.held:
            a = held.cls
            if a == new or held.kind == "bkl":
                continue
            succ = edges.get(a)
            if succ is None:
                succ = edges[a] = {}
            elif new in succ:
                continue
            held_at = self._taken_at.get((task.tid, held.name), "?")
            back = self._path(new, a)
            if back is not None:
                raise self._inversion(a, new, Witness(task.name, held_at, label), back)
            succ[new] = Witness(task.name, held_at, label)
        self._taken_at[(task.tid, lock.name)] = label

    def _path(self, src: str, dst: str) -> list[tuple[str, str, Witness]] | None:
        """An existing edge path src ->* dst (breadth-first, insertion order: deterministic)."""
        prev: dict[str, tuple[str, Witness]] = {}
        frontier = [src]
        seen = {src}
        while frontier:
            nxt = []
            for node in frontier:
                for succ, w in self.edges.get(node, {}).items():
                    if succ in seen:
                        continue
                    seen.add(succ)
                    prev[succ] = (node, w)
                    if succ == dst:
                        path = []
                        cur = dst
                        while cur != src:
                            p, pw = prev[cur]
                            path.append((p, cur, pw))
                            cur = p
                        return list(reversed(path))
                    nxt.append(succ)
            frontier = nxt
        return None

    def _inversion(
        self, a: str, b: str, now: Witness, back: list[tuple[str, str, Witness]]
    ) -> Violation:
        chain = "; ".join(w.describe(x, y) for x, y, w in back)
        return Violation(
            "lock_order_inversion",
            f"possible circular locking: {a} -> {b} now ({now.describe(a, b)}), "
            f"but earlier {b} ->* {a} ({chain})",
            new_chain=[a, b],
            old_chain=[b] + [y for _, y, _ in back],
        )
