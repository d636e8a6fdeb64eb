"""The zoo check: every historical bug rediscovered from a cold start, over several seeds.

The zoo's bar as one command (``vmfuzz zoo``): for each bug and seed, one
``vmfuzz fuzz --bug NAME --seed S --budget B --json`` in a fresh process (no example database,
nothing warmed up by an earlier campaign), several at a time; then, per bug, how many seeds
found it *properly*: the failure reports one of the bug's checks (``Bug.caught_by``) and its
shrunk case needs no more tasks in flight and no more context switches than the interleaving
drawn in the seed mail.  With the fixed kernel's campaigns, the same seeds must find nothing.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import attrs

from vmfuzz.kernel import BUGS

FIXED = "(fixed kernel)"  # the row of the campaigns without a bug switch


@attrs.frozen
class Campaign:
    """One finished campaign: the bug ("" for the fixed kernel), its seed, and what
    ``vmfuzz fuzz --json`` printed (None if it printed no JSON: ``error`` says why)."""

    bug: str
    seed: int
    out: dict[str, Any] | None
    error: str | None = None
    # A campaign of the consequence column: the bug's early checks off, its mail's outcome
    # required (Bug.consequence).
    consequence: bool = False

    @property
    def found(self) -> bool:
        return bool(self.out and self.out.get("found"))

    def _right(self) -> tuple[str, ...]:
        bug = BUGS[self.bug]
        return (bug.consequence.check,) if self.consequence else bug.caught_by()

    def endings(self) -> list[tuple[str | None, dict[str, Any]]]:
        """The found failure's (check, shrunk size), then those of its shrunk program failing
        other checks on smaller schedules (``other_failures``: the same race ending
        otherwise, saved beside it)."""
        if not self.found or self.out is None:
            return []
        out = [(self.out.get("invariant"), self.out.get("shrunk") or {})]
        out += [(o.get("invariant"), o.get("shrunk") or {})
                for o in self.out.get("other_failures") or ()]
        return out

    def expected_check(self) -> bool:
        """The failure, or a smaller ending of its program, reports a check that is right for
        this bug (in the consequence column: the mail's outcome itself)."""
        if not self.bug:
            return False
        right = self._right()
        return any(check in right for check, _ in self.endings())

    def _within(self, shrunk: dict[str, Any]) -> bool:
        bug = BUGS[self.bug]
        tasks, pre = shrunk.get("tasks"), shrunk.get("preemptions")
        if tasks is None or pre is None:
            return False
        return (bug.mail_tasks is None or tasks <= bug.mail_tasks) and (
            bug.mail_preemptions is None or pre <= bug.mail_preemptions
        )

    def good(self) -> bool:
        """Found, by a right check, and shrunk within the mail's drawing: the failure itself,
        or its shrunk program's smaller ending by another right check."""
        if not self.bug:
            return False
        right = self._right()
        return any(check in right and self._within(size) for check, size in self.endings())

    def why_not_good(self) -> str:
        """Why a found failure does not count ("" if it does): the check, or the size."""
        if not self.found or self.good() or self.out is None:
            return ""
        if not self.bug:
            return "the fixed kernel must find nothing"
        bug = BUGS[self.bug]
        if not self.expected_check():
            return f"{self.out.get('invariant')} is not one of {', '.join(self._right())}"
        return (f"larger than the mail's {counted(bug.mail_tasks, 'task')} / "
                f"{counted(bug.mail_preemptions, 'switch')}")


def counted(n: int | None, noun: str) -> str:
    """``"1 switch"``, ``"2 switches"``, ``"- tasks"`` (no number drawn)."""
    plural = noun + ("es" if noun.endswith("ch") else "s")
    return f"{_dash(n)} {noun if n == 1 else plural}"


@attrs.frozen
class Row:
    """The zoo table's row of one bug (or of the fixed kernel)."""

    bug: str
    seed_doc: str
    seeds: int
    found: int
    good: int  # found by a right check and within the mail
    errors: int
    median_seconds: float | None  # wall time to the first (unshrunk) failure, found seeds
    worst_tasks: int | None
    median_steps: int | None
    worst_preemptions: int | None
    mail: str
    checks: tuple[str, ...]
    met: bool
    # The consequence column (vmfuzz zoo --consequence): the mail's outcome required, with the
    # bug's early checks off; None when not run.  ``consequence_missing``: why the model cannot
    # show it (the column then does not count).
    consequence_check: str | None = None
    consequence_off: tuple[str, ...] = ()
    consequence_seeds: int = 0
    consequence_good: int | None = None
    consequence_checks: tuple[str, ...] = ()
    consequence_missing: str = ""
    # Work to the first (unshrunk) failure, median over the found seeds: model steps and
    # examples (the same on any machine under a step budget, unlike median_seconds).
    median_find_steps: int | None = None
    median_find_examples: int | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"3"`` or ``"0,2,5-7"`` as a sorted list of distinct seeds (ValueError if
    malformed or negative)."""
    from vmfuzz._limits import MAX_INT, MAX_SEEDS

    shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or max(len(lo), len(hi)) > 19:
            raise ValueError(f"bad seed list {shown!r} (want e.g. 0-9 or 0,3,5-7)")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"bad seed range {part[:40]!r} (high end below low end)")
        if b > MAX_INT or len(seeds) + (b - a + 1) > MAX_SEEDS:
            raise ValueError(f"seed list {shown!r}: at most {MAX_SEEDS} seeds, each below 2**63")
        seeds.update(range(a, b + 1))
    return sorted(seeds)


def command(bug: str, seed: int, budget: float | str, corpus: str | None,
            workers: int = 1, *, consequence: bool = False, max_examples: int | None = None,
            checks: Sequence[str] = ()) -> list[str]:
    """The ``vmfuzz fuzz`` command line of one campaign (in this Python, a fresh process),
    loading the plugins this process has loaded.  ``consequence``: the bug's early checks
    off (its consequence column); ``max_examples``: a budget in examples (one deterministic
    process) instead of ``budget`` (seconds, or a ``--budget`` value: ``1000000steps``);
    ``checks``: --check/--no-check options for every campaign."""
    from vmfuzz.plugins import loaded_specs

    cmd = [sys.executable, "-m", "vmfuzz", "fuzz", "--seed", str(seed), "--json"]
    if max_examples is not None:
        cmd += ["--max-examples", str(max_examples), "--workers", "1"]
    else:
        cmd += ["--budget", str(budget), "--workers", str(workers)]
    cmd += list(checks)
    if consequence and bug:
        for name in BUGS[bug].consequence.early:
            if name not in checks:
                cmd += ["--no-check", name]
    for plugin in loaded_specs():
        cmd += ["--plugin", plugin]
    if bug:
        cmd += ["--bug", bug]
    if corpus is None:
        cmd.append("--no-save")
    else:
        tag = "-consequence" if consequence else ""
        cmd += ["--corpus", f"{corpus}/{bug or 'fixed'}{tag}-s{seed}"]
    return cmd


def run_one(bug: str, seed: int, budget: float | str, corpus: str | None = None,
            workers: int = 1, *, consequence: bool = False, max_examples: int | None = None,
            checks: Sequence[str] = ()) -> Campaign:
    """Run one campaign in a fresh process (``workers`` processes of its own)."""
    cmd = command(bug, seed, budget, corpus, workers, consequence=consequence,
                  max_examples=max_examples, checks=checks)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in (0, 1):
        tail = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return Campaign(bug, seed, None, tail, consequence)
    try:
        out = json.loads(p.stdout)
    except json.JSONDecodeError:
        return Campaign(bug, seed, None, f"no JSON on stdout (exit status {p.returncode})",
                        consequence)
    return Campaign(bug, seed, out, consequence=consequence)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_all`: the campaigns that had finished, in ``jobs`` order."""

    def __init__(self, finished: list[Campaign]) -> None:
        super().__init__()
        self.finished = finished


def run_all(
    jobs: Sequence[tuple[str, int] | tuple[str, int, bool]],
    budget: float | str,
    parallel: int = 1,
    corpus: str | None = None,
    done: Callable[[int, Campaign], None] | None = None,
    runner: Callable[..., Campaign] = run_one,
    workers: int = 1,
) -> list[Campaign]:
    """Run every (bug, seed) campaign of ``jobs`` (a third item True: of the consequence
    column), ``parallel`` at a time, each with
    ``workers`` worker processes; ``done(i, campaign)`` is called as each finishes (i counts
    from 1).  Results in ``jobs`` order.
    On Ctrl-C no campaign is started any more, and :class:`Interrupted` carries those done."""
    results: list[Campaign | None] = [None] * len(jobs)
    ex = ThreadPoolExecutor(max_workers=max(1, parallel))
    try:
        futures = {}
        for i, job in enumerate(jobs):  # (bug, seed) or (bug, seed, consequence)
            extra = {"consequence": True} if len(job) > 2 and job[2] else {}
            futures[ex.submit(runner, job[0], job[1], budget, corpus, workers, **extra)] = i
        for n, fut in enumerate(as_completed(futures), 1):
            c = fut.result()
            results[futures[fut]] = c
            if done is not None:
                done(n, c)
    except KeyboardInterrupt:
        ex.shutdown(wait=False, cancel_futures=True)
        raise Interrupted([c for c in results if c is not None]) from None
    ex.shutdown()
    return [c for c in results if c is not None]


def summarize(bug: str, runs: Iterable[Campaign], need: int) -> Row:
    """The row of ``bug`` ("" or FIXED: the fixed kernel) over its campaigns: a bug's row is
    met when at least ``need`` seeds found it properly (:meth:`Campaign.good`); the fixed
    kernel's when no seed found anything."""
    runs = list(runs)
    found = [c for c in runs if c.found]
    errors = sum(c.error is not None for c in runs)
    firsts = [c.out["first_failure_seconds"] for c in found
              if c.out and c.out.get("first_failure_seconds") is not None]
    to_find = {key: [c.out[key] for c in found if c.out and c.out.get(key) is not None]
               for key in ("first_failure_steps", "first_failure_examples")}
    shrunk = [c.out["shrunk"] for c in found if c.out and c.out.get("shrunk")]
    fixed = bug in ("", FIXED)
    b = None if fixed else BUGS[bug]
    good = 0 if fixed else sum(c.good() for c in runs)
    return Row(
        bug=FIXED if fixed else bug,
        seed_doc="" if b is None else b.seed,
        seeds=len(runs),
        found=len(found),
        good=good,
        errors=errors,
        median_seconds=round(statistics.median(firsts), 1) if firsts else None,
        worst_tasks=max((s["tasks"] for s in shrunk), default=None),
        median_steps=int(statistics.median(s["steps"] for s in shrunk)) if shrunk else None,
        worst_preemptions=max((s["preemptions"] for s in shrunk), default=None),
        mail="" if b is None else f"{_dash(b.mail_tasks)} / {_dash(b.mail_preemptions)}",
        checks=tuple(sorted({str(c.out.get("invariant")) for c in found if c.out})),
        met=(not found and not errors) if fixed else (good >= need and not errors),
        median_find_steps=_median(to_find["first_failure_steps"]),
        median_find_examples=_median(to_find["first_failure_examples"]),
    )


def _median(values: Sequence[int]) -> int | None:
    return int(statistics.median(values)) if values else None


def with_consequence(row: Row, runs: Iterable[Campaign], need: int,
                     default_ran: bool = True) -> Row:
    """``row`` with its consequence column filled from the consequence campaigns ``runs``;
    met only if both columns are (the default one only if it ran)."""
    runs = list(runs)
    if row.bug == FIXED:
        return row
    c = BUGS[row.bug].consequence
    good = sum(r.good() for r in runs)
    found = [r for r in runs if r.found and r.out]
    errors = sum(r.error is not None for r in runs)
    met_c = bool(c.missing) or (good >= need and not errors)
    return attrs.evolve(
        row,
        consequence_check=c.check,
        consequence_off=c.early,
        consequence_seeds=len(runs),
        consequence_good=good,
        consequence_checks=tuple(sorted({str(r.out.get("invariant")) for r in found
                                         if r.out})),
        consequence_missing=c.missing,
        met=(row.met if default_ran else True) and met_c,
        errors=row.errors + errors,
    )


def consequence_notes(rows: Sequence[Row]) -> list[str]:
    """One line per row whose consequence column is below the bar: what was measured and why
    (``Consequence.measured``), or why the model cannot show it."""
    notes = []
    for r in rows:
        if r.consequence_check is None or r.bug == FIXED:
            continue
        c = BUGS[r.bug].consequence
        if c.missing:
            notes.append(f"{r.bug}: consequence not modelled: {c.missing}")
        elif not r.met and c.measured:
            notes.append(f"{r.bug}: consequence below the bar: {c.measured}")
    return notes


def _dash(v: object) -> str:
    return "-" if v is None else str(v)


HEADER = ("bug", "seed", "found", "good", "to find steps/examples",
          "shrunk tasks/steps/preemptions", "mail tasks/preemptions", "checks", "met")
CONSEQUENCE_HEADER = ("consequence", "off", "consequence good", "consequence checks")


def consequence_cells(row: Row) -> tuple[str, ...]:
    """The consequence column's cells (``CONSEQUENCE_HEADER`` order)."""
    if row.consequence_check is None:
        return ("-", "-", "-", "-")
    if row.consequence_missing:
        good = "not modelled"
    else:
        good = f"{row.consequence_good}/{row.consequence_seeds}"
    return (row.consequence_check, ", ".join(row.consequence_off) or "-", good,
            ", ".join(row.consequence_checks) or "-")


def _header(rows: Sequence[Row]) -> tuple[str, ...]:
    shown = any(r.consequence_check is not None for r in rows)
    return HEADER[:-1] + (CONSEQUENCE_HEADER if shown else ()) + HEADER[-1:]


def _cells(row: Row, rows: Sequence[Row]) -> tuple[str, ...]:
    c = cells(row)
    shown = any(r.consequence_check is not None for r in rows)
    return c[:-1] + (consequence_cells(row) if shown else ()) + c[-1:]


def cells(row: Row) -> tuple[str, ...]:
    """The row as table cells (``HEADER`` order)."""
    if row.found and row.worst_tasks is not None:
        shrunk = f"{row.worst_tasks} / {row.median_steps} / {row.worst_preemptions}"
    else:
        shrunk = "-"
    found = f"{row.found}/{row.seeds}" + (f" ({row.errors} errors)" if row.errors else "")
    if row.median_find_steps is not None:
        to_find = f"{row.median_find_steps:,} / {_dash(row.median_find_examples)}"
    else:
        to_find = "-"
    return (
        row.bug, row.seed_doc[:12], found,
        "-" if row.bug == FIXED else f"{row.good}/{row.seeds}",
        to_find, shrunk, row.mail or "-", ", ".join(row.checks) or "-",
        "yes" if row.met else "NO",
    )


def markdown(rows: Sequence[Row]) -> str:
    """The table in GitHub markdown (to find: median steps / examples to the first failure;
    shrunk: worst tasks / median steps / worst preemptions)."""
    header = _header(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cells(r, rows)) + " |" for r in rows]
    return "\n".join(lines)


def text(rows: Sequence[Row]) -> str:
    """The table with aligned plain-text columns."""
    header = _header(rows)
    table = [header, *(_cells(r, rows) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in table)
