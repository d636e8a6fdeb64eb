"""Collide: an echo that steers a trylock-and-back-off scheme into the mutual back-off that
livelocks it (:mod:`vmfuzz.schedules._collide`), on the model's own trylock-and-retry bug."""

from __future__ import annotations

from pathlib import Path

import attrs

from vmfuzz.case import Case, execute
from vmfuzz.corpus import load
from vmfuzz.pool import colliders
from vmfuzz.schedules import Collide, Echo, NonPreemptive, RandomWalk
from vmfuzz.schedules._collide import HOLD

ROOT = Path(__file__).resolve().parent.parent
MAIL = ROOT / "corpus/mail/seed003_trylock_retry_livelock.json"
THREE = ROOT / "tests/data/trylock_retry_three_tasks_24_switches.json"


def _mail_program() -> Case:
    """The mail's program: its setup task run first, the two CPUs started when it is done."""
    case = load(MAIL).case
    setup = tuple(t for t in case.tasks if t.name == "setup")
    ready = execute(attrs.evolve(case, tasks=setup), NonPreemptive()).outcome.steps
    return attrs.evolve(case, tasks=tuple(
        t if t.name == "setup" else attrs.evolve(t, start=ready) for t in case.tasks))


def _livelocks(case: Case, make: object, seeds: range) -> int:
    n = 0
    for s in seeds:
        out = execute(case, make(s), record_trace=False).outcome  # type: ignore[operator]
        n += out.violation is not None and out.violation.check == "livelock"
    return n


def test_collide_livelocks_the_mails_program_far_more_often_than_echo() -> None:
    """Of the walks that collide at all (about half), Echo's mostly collide one-sidedly or
    drift apart in the next round; Collide's run the holder first and then the pair in lock
    step.  Measured on 1,000 seeds: Echo 21, Collide 444."""
    case = _mail_program()
    echo = _livelocks(case, lambda s: Echo(RandomWalk(s)), range(150))
    collide = _livelocks(case, lambda s: Collide(RandomWalk(s)), range(150))
    assert collide >= 40 and collide > 5 * echo, (echo, collide)


def test_a_bystander_does_not_hide_the_livelock() -> None:
    """In lock step, tasks outside the collision run first: once they are done, every live
    task is retrying and the livelock is seen.  On the three-task program (migrate and an
    mlock on a forked chain, a driver_ioctl beside them), 300 seeds: Echo 2, Collide 169; the
    colliding pair alone, Collide 180."""
    case = load(THREE).case
    whole = _livelocks(case, lambda s: Collide(RandomWalk(s)), range(60))
    assert whole >= 15, whole
    first = next(r for r in (execute(case, RandomWalk(s)) for s in range(100)) if r.sched.retried)
    pair = colliders(case, first.sched)
    assert pair is not None
    assert _livelocks(pair, lambda s: Collide(RandomWalk(s)), range(60)) >= 15


def test_collide_is_echo_until_a_trylock_fails() -> None:
    """Without a refused trylock Collide chooses as Echo does: same decisions on the fixed
    kernel, where no trylock-and-retry runs (the mail's program, bug off)."""
    case = _mail_program()
    fixed = attrs.evolve(case, config=attrs.evolve(case.config, bugs=frozenset()))
    for s in range(20):
        a = execute(fixed, Echo(RandomWalk(s))).sched.decisions
        b = execute(fixed, Collide(RandomWalk(s))).sched.decisions
        assert a == b
    assert HOLD > 0
