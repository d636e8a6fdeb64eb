"""The shrink passes, as a named, ordered list (:data:`PASSES`).

A round tries the passes in order, each only where it applies; the first that finds a
smaller failure (the same check, smaller by :func:`~vmfuzz.shrink._size.size_of`) has it
adopted and the round starts again.  A round where no pass finds one ends the shrink, and so
does the budget.  A pass with a share draws on that fraction of the budget left when it
starts (delay-bounded search of a failure with many switches can spend any budget); the
others draw on the whole.  ``ddmin_switches`` keeps what it finds itself and lets the round
go on; ``shifted_switches`` and ``minimal_preemptions`` run after the rounds, each on a
budget of its own (so the rounds' result is the same with them or without).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cached_property
from typing import Any

import attrs

from vmfuzz.case import Case, Run, execute
from vmfuzz.failure import Failure, concurrent_tasks
from vmfuzz.schedules import PCT, Collide, Echo, PreemptionList, RandomWalk
from vmfuzz.shrink._budget import Budget
from vmfuzz.shrink._programs import (
    calls_of,
    grown_programs,
    pair_programs,
    regrouped_programs,
    smaller_programs,
    split_programs,
)
from vmfuzz.shrink._schedules import (
    Anchor,
    Anchored,
    anchors_of,
    preemptions_of,
    reproduce,
    search,
    to_preemptions,
    without,
)
from vmfuzz.shrink._size import Prog, Size, adopted, failure_size, prog, size_of

PER_CANDIDATE = 300  # delay-bounded search runs per program (fewer_switches, smaller_searched)
SPLIT_PER_CANDIDATE = 24  # delay-bounded runs per split program and bound (split_setup)
SPLIT_DEPARTURES = 2  # split_setup: departures searched at most (a free one and a switch)
PAIRS_RUNS = 5000  # pairs: runs over a whole shrink, all its searches together
SAMPLED_PER_CANDIDATE = 64  # sampled schedules per smaller program (sampled)
SHIFT = 8  # shifted_switches: decisions a remaining switch moves, at most, either way
SHIFT_ENTRIES = 8  # shifted_switches: for a preemption list of at most this many entries
SHIFT_RUNS = 1000  # shifted_switches: its budget's runs (a list of 8 entries takes at most 904)
VERIFY_RUNS = 3000  # minimal_preemptions: runs per bound, and its budget's runs
VERIFY_SECONDS = 300.0  # minimal_preemptions: its budget's CPU-time safety net

Found = tuple[Case, Run] | None  # a smaller failure a pass found: its program and run
PairSig = tuple[frozenset[str], frozenset[str], int]  # (world, calls, departures)


@attrs.define
class PassStats:
    """What one pass did over a whole shrink: candidates ``tried`` (run at least once: a
    program under the failure's switches or searched at one departure bound; for
    ``ddmin_switches`` a preemption list, for ``sampled`` a program under its sampled
    schedules, for ``minimal_preemptions`` a preemption bound), failures ``kept`` (adopted),
    program ``runs`` charged to the budget, and ``seconds`` of CPU time (this process)."""

    name: str
    tried: int = 0
    kept: int = 0
    runs: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "tried": self.tried, "kept": self.kept, "runs": self.runs,
                "seconds": round(self.seconds, 3)}


class _Round:
    """What the passes of one round share, computed once per failure (when first asked)."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        self.case = failure.case

    @cached_property
    def better(self) -> Size:
        """The failure's size: what a candidate has to beat."""
        return failure_size(self.failure)

    @cached_property
    def _preempted(self) -> tuple[list[tuple[int, int]], set[str]]:
        return preemptions_of(self.case, self.case.schedule.decisions)

    @property
    def hint(self) -> list[tuple[int, int]]:
        """The failure's switches as a preemption list."""
        return self._preempted[0]

    @property
    def labels(self) -> frozenset[str]:
        """Where the failure preempted running tasks (the race window)."""
        return frozenset(self._preempted[1])

    @cached_property
    def anchors(self) -> list[Anchor]:
        """The failure's switches anchored at labels."""
        return anchors_of(self.case, self.case.schedule.decisions)

    @cached_property
    def candidates(self) -> list[Case]:
        return smaller_programs(self.case)

    @cached_property
    def regrouped(self) -> list[Case]:
        return regrouped_programs(self.case, self.failure.trace)


@attrs.define
class Shrinking:
    """A shrink under way: the failure so far, and what the passes remember between rounds.

    ``searched``: program -> departures searched in vain (a program is not searched again
    with as many: the bound never grows and the bar only rises).  ``dd_done``: the failure
    ddmin last ran on (it runs again only on one it has not seen).  ``pairs_done``: the
    two-operation searches so far (world, calls, departures): a program with fewer operations
    has no pair one of them did not try; ``pairs_runs``: the runs they spent.  ``minimal``:
    what ``minimal_preemptions`` found; ``others``: the first run of each other check its
    search met (the same program failing otherwise, with fewer preemptions)."""

    failure: Failure
    check: str
    searched: dict[Prog, int] = attrs.Factory(dict)
    dd_done: Size | None = None
    pairs_done: list[PairSig] = attrs.Factory(list)
    pairs_runs: int = 0
    minimal: bool | None = None
    others: dict[str, Run] = attrs.Factory(dict)
    _round: _Round | None = None

    @property
    def round(self) -> _Round:
        if self._round is None:
            self._round = _Round(self.failure)
        return self._round

    def adopt(self, run: Run, case: Case) -> None:
        self.failure = adopted(self.failure, run, case)
        self._round = None


@attrs.frozen
class Pass:
    """One shrink pass: its ``name``, what it tries (``doc``, one line), its ``share`` of the
    budget left when it starts (None: the whole budget), when it ``applies``, and ``run``
    (the smaller failure found, or None)."""

    name: str
    doc: str
    share: tuple[int, int] | None
    applies: Callable[[Shrinking], bool]
    run: Callable[[Shrinking, Budget, PassStats], Found]


def _always(s: Shrinking) -> bool:
    return True


def _ddmin_applies(s: Shrinking) -> bool:
    return s.failure.preemptions > 8 and s.dd_done != failure_size(s.failure)


def _ddmin_switches(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """Delta debugging (Zeller's ddmin) over the failure's context switches: drop halves,
    then quarters ... of the preemption list while the same check still fails.  A failure
    found by a random walk or PCT has tens or hundreds of switches of which one or two make
    the race; removing them one at a time would cost a run each, ddmin O(k log n).  Keeps
    what it finds itself; the round goes on."""
    _ddmin(s, budget, stats)
    s.dd_done = failure_size(s.failure)
    return None


def _ddmin(s: Shrinking, budget: Budget, stats: PassStats) -> None:
    """ddmin proper: keeps each smaller failure as it goes (the same program, fewer switches)."""
    case = s.failure.case
    pre = to_preemptions(case, case.schedule.decisions)
    n = 2
    while len(pre) >= 2 and not budget.spent:
        size = -(-len(pre) // n)
        reduced = False
        for lo in range(0, len(pre), size):
            if not budget.take():
                return
            stats.tried += 1
            cand = without(pre, lo, lo + size)
            run = execute(case, PreemptionList(cand))
            if run.outcome.check == s.check and size_of(case, run) < failure_size(s.failure):
                s.adopt(run, case)
                stats.kept += 1
                pre = to_preemptions(case, tuple(run.sched.decisions))
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if n >= len(pre):
                return
            n = min(len(pre), 2 * n)


def _pair_sig(s: Shrinking) -> PairSig:
    """What a two-operation search covers: the world, the calls, departures up to 2."""
    case = s.failure.case
    return case.config.world, calls_of(case), min(s.failure.preemptions, 2)


def _pairs_apply(s: Shrinking) -> bool:
    better = s.round.better
    world, calls, departures = _pair_sig(s)
    return s.pairs_runs < PAIRS_RUNS and (better[0] > 2 or better[1] > 2) and not any(
        world == w and calls <= c and departures <= d for w, c, d in s.pairs_done
    )


def _pairs(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The first two-operation program (:func:`pair_programs`) that fails smaller: pairs of
    the failure's own operations with up to 2 departures from the default policy, then pairs
    with a variation with up to 1; among as many departures, those where the failure
    preempted first.  In vain, not again for a subset of these calls: a search cut short by
    its share would start again from its first pairs (and take a third of what is left each
    round).  At most PAIRS_RUNS runs over the whole shrink: a failure with many switches
    changes its world or calls often, and each change started a search of a third of what
    was left, until the budget was gone before the passes after it had their turn."""
    sub = Budget(min(budget.runs - budget.used, PAIRS_RUNS - s.pairs_runs), budget.deadline)
    found = _pair(s, sub, stats)
    budget.absorb(sub)
    s.pairs_runs += sub.used
    if found is None:
        s.pairs_done.append(_pair_sig(s))
    return found


def _pair(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The search of :func:`_pairs`: own pairs through 2 departures, then varied through 1."""
    better = s.round.better
    prefer = s.round.labels
    own, more = pair_programs(s.failure.case)
    for pairs, most, limit in ((own, 2, 150), (more, 1, 30)):
        for departures in range(min(s.failure.preemptions, most) + 1):
            for c in pairs:
                if budget.spent:
                    return None
                used = budget.used
                run = reproduce(c, s.check, better, departures, budget, prefer=prefer,
                                limit=limit)
                stats.tried += budget.used > used
                if run is not None:
                    return c, run
    return None


def _same_switches(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """Each smaller program, then each regrouped one, under the failure's preemption list,
    then under the same switches anchored at labels (they survive deleting a task)."""
    r = s.round
    for c in r.candidates + r.regrouped:
        used = budget.used
        run = reproduce(c, s.check, r.better, -1, budget, hint=r.hint)
        if run is None and r.anchors and budget.take():
            anchored = execute(c, Anchored(r.anchors))
            if anchored.outcome.check == s.check and size_of(c, anchored) < r.better:
                run = anchored
        stats.tried += budget.used > used
        if run is not None:
            return c, run
    return None


def _fewer_applies(s: Shrinking) -> bool:
    bound = s.failure.preemptions
    return bound > 0 and s.searched.get(prog(s.failure.case), -1) < bound - 1


def _fewer_switches(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The same program by delay-bounded search with one departure fewer than the failure's
    preemptions, where the failure preempted first."""
    case = s.failure.case
    bound = s.failure.preemptions
    used = budget.used
    run = reproduce(case, s.check, s.round.better, bound - 1, budget, prefer=s.round.labels,
                    limit=PER_CANDIDATE)
    stats.tried += budget.used > used
    if run is not None:
        return case, run
    if not budget.spent:
        s.searched[prog(case)] = bound - 1
    return None


def _shifted_applies(s: Shrinking) -> bool:
    return s.failure.preemptions > 0 and len(s.round.hint) <= SHIFT_ENTRIES


def _shifted_switches(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The same program under the failure's switches with one dropped and one of the others
    moved by up to SHIFT decisions, nearest first.  A failure with a switch to spare often
    fails with one fewer a few decisions away (another point of the same window): the
    bounded search below a count visits such schedules in depth-first order, often past its
    run limit (a 13-operation program's one-switch failure was its 7,286th of 11,687)."""
    case = s.failure.case
    pre = s.round.hint
    better = s.round.better
    seen: set[tuple[tuple[int, int], ...]] = set()
    for d in range(SHIFT + 1):
        for sign in (-1, 1) if d else (1,):
            for i in range(len(pre)):
                base = without(pre, i, i + 1)
                for j in range(len(base)) if d else range(1):
                    cand = list(base)
                    if d:
                        gap = cand[j][0] + sign * d
                        if gap < 0:
                            continue
                        cand[j] = (gap, cand[j][1])
                    key = tuple(cand)
                    if key in seen:
                        continue
                    seen.add(key)
                    if not budget.take():
                        return None
                    stats.tried += 1
                    run = execute(case, PreemptionList(cand))
                    if run.outcome.check == s.check and size_of(case, run) < better:
                        return case, run
    return None


def _sampled_applies(s: Shrinking) -> bool:
    better = s.round.better
    return better[0] > 2 or better[1] > 1


def _sampled(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The first smaller program (fewer tasks first) that fails smaller under one of
    SAMPLED_PER_CANDIDATE sampled schedules: PCT over the failure's length and echoed random
    walks, the sources the fuzzer finds with.  For a failure with many switches (a
    livelock's lock-step retry rounds), where delay-bounded search of a smaller program
    cannot reach as many departures; seeded by the failure's size, so deterministic."""
    better = s.round.better
    length = max(2, s.failure.steps)
    rng = random.Random(f"sampled {better}")
    for c in sorted(s.round.candidates, key=lambda c: len(c.tasks)):  # stable
        for i in range(SAMPLED_PER_CANDIDATE):
            if not budget.take():
                return None
            stats.tried += i == 0
            seed_i = rng.getrandbits(32)
            src = (PCT(seed_i, rng.randint(2, 4), length) if i % 2 == 0
                   else Echo(RandomWalk(seed_i)))
            run = execute(c, src)
            if run.outcome.check == s.check and size_of(c, run) < better:
                return c, run
            # A run that went round a retry loop: a collision walk of the same seed too
            # (the fuzzer's retry walks, which make a collision repeat; the echoed walk
            # rarely does).
            if run.sched.retried and budget.take():
                run = execute(c, Collide(RandomWalk(seed_i)))
                if run.outcome.check == s.check and size_of(c, run) < better:
                    return c, run
    return None


def _smaller_searched(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The first smaller or regrouped program that fails smaller, trying the cheap searches
    on every program before the dear ones: one departure where the failure preempts, then
    delay-bounded search, one departure more at a time, up to the failure's preemptions."""
    better = s.round.better
    prefer = s.round.labels
    candidates = s.round.candidates + s.round.regrouped
    if prefer and s.failure.preemptions >= 1:
        for c in candidates:
            used = budget.used
            run = reproduce(c, s.check, better, 1, budget, prefer=prefer, only_preferred=True,
                            limit=24)
            stats.tried += budget.used > used
            if run is not None:
                return c, run
    for departures in range(s.failure.preemptions + 1):
        for c in candidates:
            if s.searched.get(prog(c), -1) >= departures:
                continue
            used = budget.used
            run = reproduce(c, s.check, better, departures, budget, prefer=prefer,
                            limit=PER_CANDIDATE)
            stats.tried += budget.used > used
            if run is not None:
                return c, run
            if budget.spent:
                return None
            s.searched[prog(c)] = departures
    return None


def _split_setup(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The first program with a task's leading operations split off into a setup task
    (:func:`split_programs`) that fails with fewer tasks in flight or fewer switches: under
    the default policy first, then with free departures and switches where the failure
    preempted, one departure more at a time up to its count or SPLIT_DEPARTURES (a setup
    split off a mail-sized race leaves one switch and at most one free departure: which
    task runs after the setup)."""
    return _fewer_in_flight(s, split_programs(s.failure.case),
                            min(s.failure.preemptions, SPLIT_DEPARTURES), SPLIT_PER_CANDIDATE,
                            budget, stats)


def _fewer_in_flight(s: Shrinking, candidates: list[Case], max_departures: int,
                     per_candidate: int, budget: Budget, stats: PassStats) -> Found:
    """The first of ``candidates`` that fails with fewer tasks in flight or fewer switches:
    each under the default policy first, then with free departures and switches where the
    failure preempted, one departure more at a time up to ``max_departures`` (at most
    ``per_candidate`` runs each)."""
    better = s.round.better
    prefer = s.round.labels
    cap = better[:2]
    for departures in range(max_departures + 1):
        for c in candidates:
            if budget.spent:
                return None
            used = budget.used
            run = reproduce(
                c, s.check, better, departures, budget, prefer=prefer,
                only_preferred=departures > 0, limit=per_candidate if departures else 1,
            )
            stats.tried += budget.used > used
            if run is not None and size_of(c, run)[:2] < cap:
                return c, run
    return None


def _grown_applies(s: Shrinking) -> bool:
    return s.failure.preemptions > 0 or concurrent_tasks(s.failure.trace) > 1


def _grown(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """The first near or grown program (:func:`grown_programs`) that fails with fewer tasks
    in flight or fewer switches: under the default policy first, then with one switch where
    the failure preempted, and so on up to its count; the few near ones through every bound
    first."""
    for group in grown_programs(s.failure.case):
        found = _fewer_in_flight(s, group, s.failure.preemptions, 24, budget, stats)
        if found is not None or budget.spent:
            return found
    return None


def _minimal_preemptions(s: Shrinking, budget: Budget, stats: PassStats) -> Found:
    """Bounded exhaustive search (as CHESS does) over every schedule of the shrunk program
    below its preemption count, at most VERIFY_RUNS runs per bound.  Sets ``s.minimal``:
    True when every smaller bound was searched exhaustively (or a schedule with fewer
    preemptions was found and kept), None when a search was cut short, False when fewer
    preemptions need more tasks in flight (the failure is kept as it is).  A run that fails
    another check on the way is kept in ``s.others`` (:func:`other_failures`)."""
    for bound in range(s.failure.preemptions):
        stats.tried += 1
        run, exhausted = search(s.failure.case, s.check, bound, VERIFY_RUNS, budget,
                                others=s.others)
        if run is not None:
            if concurrent_tasks(run.sched.trace) > concurrent_tasks(s.failure.trace):
                s.minimal = False  # fewer preemptions, but more tasks in flight: tasks first
                return None
            s.adopt(run, s.failure.case)
            stats.kept += 1
            s.minimal = True
            return None
        if not exhausted:
            s.minimal = None
            return None
    s.minimal = True
    return None


def other_failures(s: Shrinking) -> list[Failure]:
    """The shrunk program failing other checks than its own, smaller than its failure (fewer
    tasks in flight, else as many and fewer preemptions), as the bounded search of
    ``minimal_preemptions`` met them, in the order of their checks' names.  A race often
    ends otherwise on another schedule (two pages cached for one entry, or, a switch later,
    the stale one of them mapped): the smaller ending is the race at its smallest, and it is
    reported beside the failure, never in its place (the failure's check is the one the
    campaign found; another check may be another bug)."""
    cap = failure_size(s.failure)[:2]
    out = []
    for check in sorted(s.others):
        run = s.others[check]
        if size_of(s.failure.case, run)[:2] < cap:
            out.append(adopted(s.failure, run, s.failure.case))
    return out


ROUND_PASSES: tuple[Pass, ...] = (
    Pass("ddmin_switches",
         "ddmin over the switches of a failure with more than 8, not seen before",
         None, _ddmin_applies, _ddmin_switches),
    Pass("pairs",
         "two one-operation tasks from the failure's operations (or one varied), <= 2 "
         "departures; for more than 2 tasks in flight or switches",
         (1, 3), _pairs_apply, _pairs),
    Pass("same_switches",
         "each smaller or regrouped program under the failure's switches, then anchored",
         None, _always, _same_switches),
    Pass("fewer_switches",
         "the same program by delay-bounded search with one departure fewer",
         None, _fewer_applies, _fewer_switches),
    Pass("sampled",
         f"each smaller program under {SAMPLED_PER_CANDIDATE} sampled schedules (PCT, echoed "
         "random walks); for more than 2 tasks in flight or 1 switch",
         (1, 4), _sampled_applies, _sampled),
    Pass("smaller_searched",
         "the smaller and regrouped programs by delay-bounded search",
         (2, 3), _always, _smaller_searched),
    Pass("split_setup",
         "a task's leading operations split off into a setup task run first, when that "
         "saves a task or a switch",
         (1, 3), _grown_applies, _split_setup),
    Pass("grown",
         "near and grown programs (a feature, a sibling, an argument, an operation more) "
         "that save a task or a switch",
         (1, 2), _grown_applies, _grown),
)
SHIFTED_SWITCHES = Pass(
    "shifted_switches",
    f"after the rounds, the failure's switches with one dropped and another moved by up to "
    f"{SHIFT} decisions (its own budget: {SHIFT_RUNS} runs)",
    None, _shifted_applies, _shifted_switches,
)
MINIMAL_PREEMPTIONS = Pass(
    "minimal_preemptions",
    f"bounded exhaustive search below the final preemption count (its own budget: "
    f"{VERIFY_RUNS} runs)",
    None, _always, _minimal_preemptions,
)
PASSES: tuple[Pass, ...] = (*ROUND_PASSES, SHIFTED_SWITCHES, MINIMAL_PREEMPTIONS)
