"""A run drawn the way kernel engineers draw races in mail: one column per task, time downwards.

::

          T1                                | T2
          --------------------------------- | ---------------------------------
       0  swap_out:start                    |
       1  try_to_swap_out:get_swap_page     |
       2                                    | do_swap_page:lookup_swap_cache
       3  try_to_swap_out:add_to_swap_cache |
          [takes swap_lock]                 |
    *  4                                    | read_swap_cache_async:add_to_swap_cache

    *** swap_cache_unique at step 4 (T2 at read_swap_cache_async:add_to_swap_cache)
        entry 3 is in the swap cache twice: pfn 2 and pfn 5

Each line is one scheduler step: the yield label the task stopped at and, in brackets, what
happened to locks in that step (takes / blocks on / wakes / sleeps / unlock).  Cells wrap inside
their column to fit ``width``.  A long uneventful prefix, where only one task has run so far, is
elided with a line saying so (``full=True`` keeps every step); when that task never runs again (a
setup task) its column goes too.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vmfuzz._scheduler import TraceStep

if TYPE_CHECKING:
    from vmfuzz.corpus import Attempt, CorpusCase

MIN_COLUMN = 14
SEP = " | "
ELIDE_KEEP = 3  # steps of the solo prefix still shown before the first switch
ELIDE_MIN = 8  # only elide a solo prefix longer than this
ELIDE_TRACE = 24  # ... in a trace longer than this


def _wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    return textwrap.wrap(
        text,
        width=max(width, 4),
        subsequent_indent=indent,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [""]


def cell_text(step: TraceStep) -> str:
    """What one step shows in its task's column: label, then the lock event in brackets."""
    return f"{step.label} [{step.event}]" if step.event else step.label


def solo_prefix(trace: Sequence[TraceStep]) -> int:
    """Length of the prefix of ``trace`` in which only one task ran."""
    if not trace:
        return 0
    first = trace[0].task
    for i, s in enumerate(trace):
        if s.task != first:
            return i
    return len(trace)


def render_timeline(
    trace: Sequence[TraceStep],
    tasks: Sequence[str],
    *,
    width: int = 100,
    full: bool = False,
    mark_step: int | None = None,
    mark_text: str = "",
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> str:
    """Draw ``trace`` with a column per task that appears in the drawing, ordered as ``tasks``.

    ``mark_step`` gets a ``*`` in the margin and ``mark_text`` after its cell (the step where a
    check fired, and the check).  ``header`` and
    ``footer`` lines are wrapped to ``width`` and printed above and below the diagram.
    """
    start = 0
    solo = solo_prefix(trace)
    if not full and len(trace) > ELIDE_TRACE and solo > ELIDE_MIN:
        # Keep the end of the prefix for context, unless its task never runs again (a setup
        # task): then all of it goes, and so does its column.
        later = {s.task for s in trace[solo:]}
        start = solo - ELIDE_KEEP if trace[0].task in later else solo
    shown = trace[start:]
    names = list(tasks)
    for s in trace:
        if s.task not in names:
            names.append(s.task)
    if shown:  # a column for every task that appears in what is drawn
        ran = {s.task for s in shown}
        names = [n for n in names if n in ran]
    if not names:
        names = ["-"]
    col = {n: i for i, n in enumerate(names)}
    last_step = trace[-1].step if trace else 0
    num_w = len(str(last_step))
    gutter = num_w + 3  # "* " + number + " "
    ncol = len(names)
    cw = max(MIN_COLUMN, (width - gutter - len(SEP) * (ncol - 1)) // ncol)

    def row(cells: Sequence[str], margin: str = "") -> str:
        padded = [c.ljust(cw) for c in cells]
        return (margin.ljust(gutter) + SEP.join(padded)).rstrip()

    out: list[str] = []
    for line in header:
        out.extend(_wrap(line, width, "    "))
    if header:
        out.append("")
    out.append(row([n[:cw] for n in names]))
    out.append(row(["-" * cw] * ncol))

    if start:
        first, last = trace[0].step, trace[start - 1].step
        note = (
            f"... steps {first}-{last}: only {trace[0].task} ran ({start} steps elided; "
            f"--full shows every step)"
        )
        for line in _wrap(note, width - gutter, "    "):
            out.append(" " * gutter + line)
    for s in shown:
        text = cell_text(s)
        marked = mark_step is not None and s.step == mark_step
        lines = _wrap(text, cw)
        if marked and mark_text:
            mark = f"<<< {mark_text}"
            if len(lines) == 1 and len(text) + 1 + len(mark) <= cw:
                lines = [f"{text} {mark}"]
            else:
                lines += _wrap(mark, cw)
        c = col[s.task]
        for k, text in enumerate(lines):
            cells = [""] * ncol
            cells[c] = text
            margin = ""
            if k == 0:
                mark = "*" if marked else " "
                margin = f"{mark} {str(s.step).rjust(num_w)}"
            out.append(row(cells, margin))
    if footer:
        out.append("")
        for line in footer:
            out.extend(_wrap(line, width, "    "))
    return "\n".join(out) + "\n"


def _op_list(cc: CorpusCase) -> list[str]:
    lines = []
    for t in cc.case.tasks:
        ops = "; ".join(c.describe() for c in t.ops) or "(no operations)"
        start = f" (starts at step {t.start})" if t.start else ""
        lines.append(f"{t.name}{start}: {ops}")
    return lines


def case_header(cc: CorpusCase) -> list[str]:
    """The lines above a case's timeline: name, description, kernel config, schedule, tasks."""
    c = cc.case.config
    bugs = ", ".join(sorted(c.bugs)) if c.bugs else "none (fixed kernel)"
    lines = [f"case {cc.name}" + (f": {cc.description}" if cc.description else "")]
    lines.append(
        f"kernel: nr_mms={c.nr_mms} pages_per_mm={c.pages_per_mm} nr_frames={c.nr_frames} "
        f"nr_swap={c.nr_swap}; bugs: {bugs}"
    )
    if c.world:
        lines.append(f"world: {', '.join(sorted(c.world))} (see vmfuzz.kernel.boot)")
    lines.append(f"schedule: {cc.schedule_summary()}")
    return lines + _op_list(cc)


def outcome_footer(cc: CorpusCase, att: Attempt, *, expected: str | None = None) -> list[str]:
    """The lines below a timeline: how the run ended and whether that is what was recorded."""
    from vmfuzz.corpus import BUDGET, CLEAN, DIVERGED, ERROR

    lines: list[str] = []
    run = att.run
    v = run.outcome.violation if run is not None else None
    if v is not None:
        lines.append(f"*** {v.check} at step {v.step} ({v.task} at {v.label})")
        lines.append(f"    {v.message}")
    elif att.observed == CLEAN:
        lines.append(f"--- clean: every task finished after {att.steps} steps")
    elif att.observed == BUDGET:
        lines.append(f"--- step budget of {cc.case.max_steps} used up (not a failure)")
    elif att.observed == DIVERGED:
        lines.append(f"*** {att.message}")
    elif att.observed == ERROR:
        lines.append(f"*** the model crashed: {att.message}")
    want = cc.expected if expected is None else expected
    if cc.found is not None and expected is None:  # a finding: red until fixed
        was = f"found as {cc.found.get('check')} at step {cc.found.get('step')}"
        if att.observed == want:
            lines.append(f"fixed: clean ({was})")
            return lines
        if att.observed == cc.found.get("check"):
            lines.append(f"still fails ({was}): red until the fix makes it clean")
            return lines
    if att.observed == want:
        lines.append(f"expected: {want} (matches)")
    else:
        lines.append(f"expected: {want}, observed: {att.observed} (DIFFERS)")
    return lines


def render_attempt(
    cc: CorpusCase,
    att: Attempt,
    *,
    width: int = 100,
    full: bool = False,
    expected: str | None = None,
    title: str | None = None,
) -> str:
    """A case's run as a timeline with its header and outcome footer."""
    sched = att.sched
    if sched is None and att.run is not None:
        sched = att.run.sched
    trace = sched.trace if sched is not None else []
    names = [t.name for t in sched.tasks] if sched is not None else [t.name for t in cc.case.tasks]
    for t in cc.case.tasks:  # tasks that never started still get their column
        if t.name not in names:
            names.append(t.name)
    v = att.run.outcome.violation if att.run is not None else None
    header = case_header(cc)
    if title:
        header = [title, *header]
    return render_timeline(
        trace,
        names,
        width=width,
        full=full,
        mark_step=v.step if v is not None else None,
        mark_text=v.check if v is not None else "",
        header=header,
        footer=outcome_footer(cc, att, expected=expected),
    )
