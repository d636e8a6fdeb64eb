"""The historical bug registry: each entry is a switch that restores old kernel code at one place.

``Kernel.bug(name)`` is tested at exactly that place.  ``seed`` names the seed thread
(shared/seeds/NNN_*.txt) or the kernel commit that fixed the bug; ``invariant`` is the check
expected to catch it.  A bug with ``zoo`` False is re-created and tested (its drawn race
replays) but is not part of the zoo's bar (found from scratch in 9 of 10 seeds of 60 s):
``vmfuzz zoo`` runs it only when named, or with ``--all``.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Bug:
    """One historical bug: name, where it comes from, a one-line summary, expected check."""

    name: str
    seed: str
    summary: str
    invariant: str
    mail_tasks: int | None = None  # the interleaving drawn in the mail: CPUs/tasks ...
    mail_preemptions: int | None = None  # ... and context switches away from a running task
    # Other checks that are equally right: the same wrong state seen from another side (a
    # stale page mapped at an address is lost data *and* a page rmap cannot reach there).
    also: tuple[str, ...] = ()
    # False: outside the zoo's bar (the fuzzer does not yet rediscover it from scratch in 9 of
    # 10 seeds of 60 s); its registration says why and what was measured.
    zoo: bool = True

    @property
    def consequence(self) -> Consequence:
        """What the consequence zoo requires of this bug (:data:`CONSEQUENCES`)."""
        return CONSEQUENCES.get(self.name) or Consequence(self.invariant)

    def caught_by(self) -> tuple[str, ...]:
        """Every check that correctly reports this bug: ``invariant`` first, then ``also``."""
        return (self.invariant, *self.also)

    def to_json(self) -> dict[str, object]:
        return {**attrs.asdict(self), "consequence": attrs.asdict(self.consequence)}


@attrs.frozen
class Consequence:
    """The outcome the seed mail describes, and the checks that must be off to see it.

    Some checks catch a bug without its race: ``rmap_reachable`` fires at the first write of a
    half-updated vma, ``lock_not_held`` at a list write outside page_table_lock, lockdep at
    the first wrong lock order.  The consequence zoo (``vmfuzz zoo --consequence``) turns
    ``early`` off and counts a seed only when ``check`` fires (the mail's outcome), shrunk to
    the mail's size.  ``missing`` (when set) says why the model cannot show the outcome: the
    bug then has no consequence column.  ``measured`` (when set): what the consequence
    campaigns found and, below the bar, why (the zoo prints it under a row not met)."""

    check: str
    early: tuple[str, ...] = ()
    why: str = ""  # why ``early`` must be off for ``check`` to be the outcome
    missing: str = ""
    measured: str = ""


BUGS: dict[str, Bug] = {}

_STALE_PAGE = (
    "the stale page mapped at the address is seen by rmap_reachable (its index names "
    "another address) at the step it is mapped; the mail's outcome is the lost write a later "
    "load reads (data_integrity)"
)
_RARE_MIGRATION_WINDOW = (
    "a campaign must draw a migration of a page and, in another task, an mprotect that moves "
    "the start of that page's vma{child}, then hit a window of two preemptions at two exact "
    "labels: on the mail's program {verify} schedules with <= 2 preemptions leave the pte "
    "(vmfuzz verify --no-check rmap_reachable), and of 2000 single schedules PCT depth 2 "
    "none, depth 3 {pct3}, the echoing random walk {walk} (tests/schedule_rates.py); PCT of "
    "depth 2 has one change point and never can.  The pool's window probes make both "
    "preemptions from a recorded run of the migration: a new task aimed at the page held as "
    "a migration entry, paused right after its own first change of the vmas.  vmfuzz zoo "
    "--consequence-only at the zoo's budget (1.5Msteps), "
)
_HALF_UPDATED_VMA = (
    "rmap_reachable fires at vma_adjust's first write of vm_start/vm_pgoff without the lock "
    "(one task, no context switch); the mail's outcome is remove_migration_ptes missing the "
    "pte and leaving a migration pte after the page is unlocked"
)
ZOO_BUDGET_SEEDS = (
    "vmfuzz zoo --consequence-only at the zoo's budget (1.5Msteps; measured before the pool's "
    "window probes), seeds 0-6: "
)
SWAP_HALF = (
    "; with data_integrity reading every swap pte too (what a swapin would read: the swap-cache "
    "page, else the slot), the same command with the window probes, before and after it, "
)
HOLDERS_AB = (
    "; with window probes aimed also at the object's other holder (pool.HOLDERS: a forked "
    "child's copy of the entry, its intruder started after the task's second change of the "
    "pte), the same command, seeds 0-2 before/after: "
)
REUSE_AB = (
    "  Reuse probes (a reader stalled across the free and the reuse of an entry the pte "
    "dropped, for races where the pte never gets its value back) were measured and dropped: "
)
# Per bug: what the zoo's default column measured at its budget when below the bar, and where
# the search loses the seeds it misses (bugs whose check is the outcome: no consequence entry).
SEARCH_MEASURED: dict[str, str] = {
    "anon_vma_trylock_retry": (
        "vmfuzz zoo --bug anon_vma_trylock_retry --seeds 0-9 (1.5Msteps): with the retry "
        "walks echoed random walks, found at 3 (seeds 1, 5, 6, "
        "after 83,916 to 864,859 steps, 2 tasks / 11-14 switches).  Where the search lost "
        "it (seed 0): the programs that can livelock (a migration of a page a forked child "
        "maps, and a vma change of the child's vma in another task) were run only by window "
        "probes, which never ran retry walks, and of the echoed walks of the mail's program "
        "that collided at all (504 of 1,000) 365 collided one-sidedly (the holder went "
        "through) and 118 drifted apart in the next round: 21 livelocked.  With collision "
        "walks (schedules.Collide: holders first after a failed trylock, then lock step; "
        "444 of the 1,000) run also on probes' programs that went round a retry loop: found "
        "at 6 (seeds 0, 1, 2, 4, 5, 6 after 248,623, 1,066,154, 183,971, 645,935, 20,352 "
        "and 280,375 steps, each shrunk to 2 tasks / 10-31 switches; seed 4 stayed at 3 "
        "tasks / 93 switches until the shrink's sampled pass ran collision walks too).  "
        "Seeds 3 and 8 never draw a program that can livelock (9 and 16 programs collide, "
        "each one-sidedly by construction: a migration against a fork, mmap_reserved "
        "against mmap_reserved); seed 7 draws two, which livelock on 1 in 40 collision "
        "walks, and misses them"),
    "swapout_vma_after_unlock": (
        "vmfuzz zoo --bug swapout_vma_after_unlock --seeds 0-4 -j 1 (1.5Msteps), main at b8e9398: "
        "found at 2 (seeds 1 and 3, after 59,174 and 17,899 steps, 2 tasks / 1 switch).  Where "
        "the search lost seeds 0 and 2: the program is drawn and run (seed 0's campaign ran the "
        "->swapout branch 10,217 times, 6,302 of them with another task live), but nothing put a "
        "munmap of that vma inside the sleep: a window probe starts its intruder after the pte's "
        "first change (the fault), before the reclaim, and a random schedule must switch to a "
        "munmap of that very vma at one of two steps.  With flight probes (pool.in_flight: an "
        "intruder aimed at what a path changed and still works on, the path's task kept still "
        "while the intruder waits): found at 4 (seeds 0, 1, 2, 3 after 802,749, 59,174, 962,244 "
        "and 17,899 steps), each at the mail's 2 tasks / 1 switch; seed 4 nothing.  Seeds 5-9: "
        "before found at 6 (232,652 steps), after at 5 and 6 (307,204 and 242,307 steps), "
        "all at 2 / 1: 3 of 10 before, 6 of 10 after.  Without the "
        "hold (an earlier form, in the window probes' queue) seed 0 found nothing: the one "
        "probe of a ->swapout in its first 1M steps had its munmap wait for an mmap_sem a "
        "third task held (a fault in direct reclaim) while the reclaim finished; with the "
        "hold, 2 of its 12 intruders (munmap, mmap over the vma) hit the use after free"),
}

# Per bug: the consequence its seed mail (or fixing commit) describes; a bug left out is
# required to show its registered ``invariant`` with nothing turned off (the check *is* the
# outcome: a use after free, two cached pages for one entry, a livelock ...).
CONSEQUENCES: dict[str, Consequence] = {
    "vma_adjust_no_anon_vma_lock": Consequence(
        "migration_pte_page_locked", ("rmap_reachable",), _HALF_UPDATED_VMA,
        measured=_RARE_MIGRATION_WINDOW.format(child="", verify="2 of 492", pct3=7, walk=58)
        + "seeds 0-9: found at 9 (all but 2, after 184,056 to 519,656 steps), each "
        "shrunk to the mail's 2 tasks / 2 switches; with single-stall window probes, seeds "
        "0-5: none"),
    "anon_vma_lock_not_root": Consequence(
        "migration_pte_page_locked", ("rmap_reachable",), _HALF_UPDATED_VMA,
        measured=_RARE_MIGRATION_WINDOW.format(child=" (the forked child's)",
                                               verify="2 of 1016", pct3=3, walk=94)
        + "seeds 0-3 and 5-7: found at 1 (seed 0, after 249,826 steps, shrunk to the mail's "
        "2 tasks / 2 switches); with single-stall window probes, seeds 0-5: none.  The "
        "program must also fork, and migrate the page the child maps.  Seeds 0-9 at "
        "b8e9398: found at 2 (seeds 0 and 4, after 250,940 and 1,212,952 steps, 2 tasks / 2 "
        "switches), both the same case: a forked, swapped world, swapoff bringing back the "
        "page parent and child share, a migration of it and an mlock of the child's vma; "
        "seeds 0-4 with the flight probes: the same two.  Where the search loses it: the "
        "programs that migrate a shared page are mostly Hypothesis' long examples (18-29 "
        "operations), where a window probe seldom lands; in seed 1's campaign 3 of about 94 "
        "window probes were on a page another mm maps"),
    "swapout_holds_vmlist_lock": Consequence(
        "deadlock", ("lock_order_inversion",),
        "lockdep reports the ABBA as soon as both orders have been taken, by one task after "
        "the other; the mail's outcome is the hang itself, both tasks blocked",
        measured=(
            ZOO_BUDGET_SEEDS + "all 7 found the hang (after 2,671 to 436,542 steps), each "
            "shrunk to the mail's 2 tasks / 1 switch; with the window probes, seeds 7-9: all "
            "3 (after 3,256 to 1,119,889 steps, 2 tasks / 1 switch)")),
    "vm_swap_full_delete_race": Consequence(
        "data_integrity", ("rmap_reachable", "swap_map_counts"),
        _STALE_PAGE + "; swap_map_counts sees the reused entry's count first",
        measured=(
            "the committed case with both checks off loses the write on 36 of 412 schedules "
            "(vmfuzz verify); " + ZOO_BUDGET_SEEDS + "found at 3 (seeds 1, 4, 6), 2 of them "
            "at the mail's size (seed 1's shrink stopped at 2 tasks / 2 switches): the lost "
            "write shows only when a later load reads the page the reused entry brought back"
            + SWAP_HALF + "seeds 0-2: the same campaigns either way (seed 1 found it after "
            "1,334,332 steps, shrunk to 2 tasks / 2 switches; seeds 0 and 2 nothing), and the "
            "committed case still loses the write on 36 of 412 schedules: the campaigns that "
            "miss never reach the race" + HOLDERS_AB + "seed 1 (the one measured) found "
            "it after 1,303,089 steps (main at the same commit: 1,227,036), again at 2 tasks / "
            "2 switches." + REUSE_AB
            + "they find this race from its writers alone in one task (a store that faults "
            "the swapped "
            "page in and frees its entry, then reclaim that gives the entry to another page: "
            "the pte never gets the entry back, so no ABA probe sees it), but at seeds 0-2 "
            "the campaigns with them found it only at seed 1, after 1,400,600 steps, again "
            "at 2 tasks / 2 switches: the campaigns never draw those writers (the fault frees "
            "the entry only with more than half of the swap in use, or the page mlocked).  "
            "Seeds 0-9 again with the shrink's shifted_switches (the campaigns find what they "
            "found without it): found at 5 (1, 4, 6, 7, 9), good at 4 (1, 4, 6, 7): seed 1 at "
            "the mail's 2 tasks / 1 switch (before, 2 / 2: its one-switch schedule was the "
            "7,286th of 11,687 of the bounded search, past its 3,000 runs); seed 9's program "
            "(5 operations) needs both switches (the bounded search below 2 is exhaustive and "
            "finds none); 0, 2, 3, 5 and 8 nothing")),
    "swapin_no_swapcache_recheck": Consequence(
        "data_integrity", ("rmap_reachable",), _STALE_PAGE,
        measured=(
            ZOO_BUDGET_SEEDS + "none found; the bug is outside the zoo's bar in its default "
            "column too (its shortest forms need three operations in a forked, swapped world "
            "and the COW copy getting back the entry the child's exit freed)" + SWAP_HALF
            + "seeds 0-2: nothing found either way" + HOLDERS_AB + "found at seed 1 (after "
            "1,024,348 steps, shrunk to 2 tasks / 1 switch, within the mail's 4 / 1), seeds 0 "
            "and 2 nothing; before, nothing.  Where the search lost it: the writers are a "
            "store to the parent's page swapped before the fork (the COW copy), the child's "
            "exit after that copy, and reclaim that gives the freed entry to the copy, "
            "while a reader sleeps on the old page's lock; the window probe of the parent's "
            "pte aimed its operations at the parent's pte only, never at the child's copy "
            "of the entry, so the entry was never freed while the parent held it, and of "
            "20,000 mutants of write(0,3); swap_out(1) in that world 0.2% add the child's "
            "exit at all")),
    "swapin_skip_swapcache_race": Consequence(
        "data_integrity", ("rmap_reachable",), _STALE_PAGE,
        measured=(
            ZOO_BUDGET_SEEDS + "found at 2 (seeds 0, 1), 1 at the mail's size (seed 0's "
            "shrink stopped at 3 tasks / 1 switch): with rmap_reachable off the failure needs "
            "a load of the page after the stale map, in the same program" + SWAP_HALF
            + "seeds 0-2: the same campaigns either way (found after 1,111,212 steps, "
            "shrunk to 3 tasks / 1 switch; after 1,383,980 and 1,377,220, at the mail's 2 / 1): "
            "the swap-pte half changed no first failure" + HOLDERS_AB
            + "seed 0 after 1,001,199 steps at 3 tasks / 1 switch, seeds 1 and 2 at the "
            "mail's 2 / 1 after 1,356,397 and 1,492,932 "
            "steps (main at the same commit: seeds 1 and 2 after 1,280,347 and 1,446,653)."
            + REUSE_AB
            + "with them (and holders) seed 2 was lost: the probes' work delays the "
            "campaigns that find it near the end of the budget")),
    "detach_vmas_outside_ptl": Consequence(
        "use_after_free", ("lock_not_held",),
        "lock_not_held fires at the first detach outside page_table_lock (one task); the "
        "mail's outcome is the reader under page_table_lock alone (2.4 swap_out_mm's "
        "find_vma) storing the vma it found into mm->mmap_cache after the detach killed the "
        "cache: do_munmap frees it while the cache names it (use_after_free at the free; the "
        "next find_vma of the mm would read the freed vma)",
        measured=(
            "at 1.5Msteps (the zoo's budget) 6 of 10 seeds (0-9) found it, 3 at the mail's "
            "size (0, 3, 8: the reader runs first and is switched out once, at find_vma); 1, "
            "2 and 6 shrink to 2 tasks / 2 switches: their munmap is the one inside an mmap "
            "over a mapped range, whose own continuation reads the freed vma, and its "
            "vma_adjust must run before the reader's find_vma and its detach after: two "
            "switches whichever runs first (seed 1's program, vmfuzz verify --bound 1: clean "
            "on all 22 schedules).  One switch needs a plain munmap and a later access, as in "
            "the mail: two moves from those programs (a sibling, an operation more), which a "
            "shrink of one smaller step at a time does not take (measured before the "
            "pool's window probes; with them, the missing seeds 4, 5, 7 and 9: none found).  "
            "With the freed vma left in mmap_cache reported at its free (no later access "
            "needed), seeds 4 and 5: nothing still.  With reader probes (a scan of every mm "
            "stalled inside its walk before a recorded vma-list write) too, seeds 0-9: found at "
            "6, good at 3 (3, 4, 8 at the mail's 2 tasks / 1 switch; seed 4 for the first "
            "time, after 332,526 steps); 1, 2, 6 at 2 / 2; 0, 5, 7, 9 nothing (seed 0 was "
            "good before the window probes).  With the flight probes too, seeds 0-9: the same "
            "seeds good, at 2 / 2 and missed.  Seed 6's program (a munmap that splits the "
            "child's vma before the detach; find_vma walks, the window the race needs, only "
            "when mmap_cache misses) needs both switches: with the whole vma unmapped, either "
            "task first, or a read of another page first, vmfuzz verify --bound 1 finds it "
            "clean on every schedule")),
}


def register(
    name: str,
    seed: str,
    summary: str,
    invariant: str,
    *,
    mail_tasks: int | None = None,
    mail_preemptions: int | None = None,
    also: tuple[str, ...] = (),
    zoo: bool = True,
) -> None:
    """Add bug ``name``; ``mail_*`` give the size of the race as drawn in the seed mail;
    ``also`` names other checks that report the same wrong state (equally right); ``zoo``
    False keeps it out of the zoo's bar (see the module doc)."""
    if name in BUGS:
        raise ValueError(f"bug {name} registered twice")
    BUGS[name] = Bug(name, seed, summary, invariant, mail_tasks, mail_preemptions, tuple(also),
                     zoo)


def zoo_bugs() -> list[str]:
    """The names of the bugs in the zoo's bar (``zoo`` True), sorted."""
    return sorted(n for n, b in BUGS.items() if b.zoo)


def unknown_bugs(names: list[str]) -> str | None:
    """None if every name is a registered bug, else a one-line error naming the known ones."""
    unknown = [n for n in names if n not in BUGS]
    if not unknown:
        return None
    known = ", ".join(sorted(BUGS)) or "(none registered)"
    return f"unknown bug {', '.join(unknown)}; known bugs: {known}"
