"""Schedules of one program: delay-bounded search, bounded exhaustive search, and a failing
run's switches as a sparse preemption list or as label-anchored switches.

Candidate schedules come from delay-bounded search (every schedule that departs from the
default policy at most d times, fewest first), then CHESS-style preemption-bounded search.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vmfuzz.case import Case, Run, execute
from vmfuzz.schedules import PreemptionList, Replay, explore
from vmfuzz.shrink._budget import Budget
from vmfuzz.shrink._size import Size, size_of


def delays(
    case: Case,
    max_delays: int,
    limit: int,
    budget: Budget,
    prefer: frozenset[str] = frozenset(),
    only_preferred: bool = False,
) -> Iterator[Run]:
    """Runs of ``case`` under every schedule that departs from the default policy at most
    ``max_delays`` times (delay bounding), by number of departures; at most ``limit`` runs.
    A departure where the running task could go on is a preemption, one where it blocked or
    ended is free: ``k`` departures make at most ``k`` preemptions.  Among schedules with as
    many departures, those that preempt a task standing at a label in ``prefer`` come first
    (where the failure being shrunk preempted: the race window); ``only_preferred`` tries
    nothing else but free departures (which task runs first, or after one blocks or ends).
    Each schedule is a sparse preemption list (positions turned into gaps).
    """
    frontier: list[tuple[tuple[int, int], ...]] = [()]
    runs = 0
    for level in range(max_delays + 1):
        deeper: list[tuple[tuple[int, int], ...]] = []
        later: list[tuple[tuple[int, int], ...]] = []
        for devs in frontier:
            if runs >= limit or not budget.take():
                return
            runs += 1
            rec = _Recorder(PreemptionList(_gaps(devs)))
            run = execute(case, rec)
            yield run
            if level == max_delays:
                continue
            after = devs[-1][0] + 1 if devs else 0
            for pos in range(after, len(rec.log)):
                n = rec.log[pos][0]
                if rec.where[pos] in prefer:
                    deeper.extend((*devs, (pos, off)) for off in range(n - 1))
                elif not only_preferred or not rec.where[pos]:
                    later.extend((*devs, (pos, off)) for off in range(n - 1))
        frontier = deeper + later
        if not frontier:
            return


def _gaps(devs: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    out = []
    prev = -1
    for pos, off in devs:
        out.append((pos - prev - 1, off))
        prev = pos
    return out


def search(
    case: Case, check: str, bound: int, limit: int, budget: Budget | None = None,
    others: dict[str, Run] | None = None,
) -> tuple[Run | None, bool]:
    """A run of ``case``'s tasks failing ``check`` with <= ``bound`` preemptions, if any
    (bounded exhaustive exploration, as CHESS does: the first hit has the fewest preemptions
    among the schedules explored).  With ``others``, the first run that fails another check
    is kept there too, under that check's name (the same program failing otherwise).

    Returns (run or None, whether the search space was exhausted within ``limit`` runs).
    """
    hit: list[Run] = []

    def run_one(src: Any) -> bool:
        run = execute(case, src)
        got = run.outcome.check
        if got == check:
            hit.append(run)
            return True
        if others is not None and got is not None and got not in others:
            others[got] = run
        return False

    runs = 0
    for found in explore(run_one, bound=bound, limit=limit):
        runs += 1
        if found:
            return hit[0], True
        if budget is not None and not budget.take():
            return None, False
    return None, runs < limit


def reproduce(
    case: Case,
    check: str,
    better: Size,
    max_delays: int,
    budget: Budget,
    *,
    hint: list[tuple[int, int]] | None = None,
    prefer: frozenset[str] = frozenset(),
    only_preferred: bool = False,
    limit: int = 300,
) -> Run | None:
    """A run of ``case`` that fails ``check`` and is smaller (by :func:`size_of`) than
    ``better``: under ``hint`` first (a preemption list relative to the default policy), then
    by delay-bounded search (:func:`delays`) with up to ``max_delays`` departures, <= ``limit``
    runs."""
    if hint is not None:
        if not budget.take():
            return None
        run = execute(case, PreemptionList(hint))
        if run.outcome.check == check and size_of(case, run) < better:
            return run
    for run in delays(case, max_delays, limit, budget, prefer, only_preferred):
        if run.outcome.check == check and size_of(case, run) < better:
            return run
    return None


class _Recorder:
    """Wraps a source and records, per decision, (runnable count, default index, chosen) and
    where the running task stands if it could go on (its label; "" at a free decision)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.log: list[tuple[int, int, int]] = []
        self.where: list[str] = []

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        chosen = self.inner.choose(runnable, default, sched) % len(runnable)
        self.log.append((len(runnable), default, chosen))
        cur = sched.current
        self.where.append(cur.label if cur is runnable[default] else "")
        return chosen


def to_preemptions(case: Case, decisions: tuple[int, ...]) -> list[tuple[int, int]]:
    """The recorded decisions as a sparse preemption list relative to the default policy
    (exact: replaying the list reproduces the decisions)."""
    return preemptions_of(case, decisions)[0]


Anchor = tuple[str, str, int, str]  # (task, label it stands at, occurrence, task switched to)


def anchors_of(case: Case, decisions: tuple[int, ...]) -> list[Anchor]:
    """The recorded decisions as label-anchored switches: "when task A stands at label L for
    the k-th time at a decision, run task B".  Unlike gaps counted in decisions, anchors
    survive deleting an unrelated task or operation (its decisions vanish, A's labels stay)."""
    rec = _AnchorRecorder(Replay(decisions, strict=False))
    execute(case, rec, record_trace=False)
    return rec.anchors


class _AnchorRecorder:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: dict[tuple[str, str], int] = {}
        self.anchors: list[Anchor] = []

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        chosen = self.inner.choose(runnable, default, sched) % len(runnable)
        cur = sched.current
        if cur is not None and cur is runnable[default]:
            key = (cur.name, cur.label)
            k = self.seen[key] = self.seen.get(key, 0) + 1
            if chosen != default:
                self.anchors.append((cur.name, cur.label, k, runnable[chosen].name))
        return chosen


class Anchored:
    """Replays label-anchored switches (see :func:`anchors_of`); the default policy
    elsewhere.  A switch whose target is not runnable is skipped."""

    def __init__(self, anchors: list[Anchor]) -> None:
        self.todo = {(a, lab, k): b for a, lab, k, b in anchors}
        self.seen: dict[tuple[str, str], int] = {}

    def choose(self, runnable: list[Any], default: int, sched: Any) -> int:
        cur = sched.current
        if cur is None or cur is not runnable[default]:
            return default
        key = (cur.name, cur.label)
        k = self.seen[key] = self.seen.get(key, 0) + 1
        want = self.todo.get((cur.name, cur.label, k))
        if want is not None:
            for i, t in enumerate(runnable):
                if t.name == want:
                    return i
        return default


def preemptions_of(
    case: Case, decisions: tuple[int, ...]
) -> tuple[list[tuple[int, int]], set[str]]:
    """:func:`to_preemptions`, and the labels at which running tasks were preempted."""
    rec = _Recorder(Replay(decisions, strict=False))
    execute(case, rec, record_trace=False)
    labels = {
        w for (_n, d, c), w in zip(rec.log, rec.where, strict=True) if c != d and w
    }
    out = []
    gap = 0
    for n, default, chosen in rec.log:
        if chosen == default:
            gap += 1
            continue
        others = [k for k in range(n) if k != default]
        out.append((gap, others.index(chosen)))
        gap = 0
    return out, labels


def without(pre: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    """The preemption list without entries ``lo..hi-1``: their decisions become default ones,
    so the gap of the entry after them absorbs theirs (later switches stay where they were)."""
    carry = sum(g + 1 for g, _ in pre[lo:hi])
    rest = pre[hi:]
    if rest:
        rest = [(rest[0][0] + carry, rest[0][1]), *rest[1:]]
    return pre[:lo] + rest
