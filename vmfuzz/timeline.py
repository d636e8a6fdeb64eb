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

import itertools
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from vmfuzz._scheduler import TraceStep
from vmfuzz.causes import (
    Cause,
    changed,
    event_keys,
    event_text,
    previous_details,
    violation_keys,
)
from vmfuzz.kernel.kernel import ENTRY, FREE, MM, PAGE, PTE_CLEAR, SET_PTE, WRITE, Event
from vmfuzz.violation import Violation

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
    # A column for every task that appears in what is drawn.
    names, col, gutter, cw, row, out = _grid(trace, tasks, shown or None, width, header)
    ncol, num_w = len(names), gutter - 3

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


# ----------------------------------------------------------------------------- the mail view
FOLD_NAMES = 3  # kernel functions a folded stretch names, first and last


def _fold_text(steps: Sequence[TraceStep]) -> str:
    """``... 13 steps: vm_mmap, vma_link, ..., drv_swapout_vma``: a folded stretch of one task."""
    names = list(dict.fromkeys(s.label.split(":")[0] for s in steps if s.label != "exit"))
    if len(names) > FOLD_NAMES + 1:
        names = [*names[:FOLD_NAMES - 1], "...", names[-1]]
    n = len(steps)
    return f"... {n} step{'s' if n != 1 else ''}" + (f": {', '.join(names)}" if names else "")


COUNT_CHECKS = frozenset({"mapcount_matches_ptes", "refcount_covers_users", "bad_page",
                          "use_after_free", "page_refs_at_rest"})
LAYOUT_CHECKS = frozenset({"rmap_reachable", "vma_list_sane", "pte_in_vma",
                           "reserved_pte_cleared"})


def _worth_drawing(e: Event, prev: Any, check: str | None) -> bool:
    """Whether an event on a verdict's object is a data event the mail view draws: ptes set
    and cleared, frees, user stores, swap-cache changes; counts and swap_map changes only
    for the checks about them (a freed page or slot always), vma layouts for layout checks."""
    kind = e[3]
    if kind in (SET_PTE, PTE_CLEAR, FREE, WRITE):
        return True
    if prev is None and kind != MM:
        return False
    if kind == PAGE:
        if check in COUNT_CHECKS:
            return bool(e[5][:2] != prev[:2])
        return bool(e[5][0] == 0 and prev[0] != 0)
    if kind == ENTRY:
        if check == "swap_map_counts" and e[5][0] != prev[0]:
            return True
        return bool(e[5][1] != prev[1] or (e[5][0] == 0 and prev[0] != 0))
    if kind == MM:
        return check in LAYOUT_CHECKS and changed(e, prev)
    return False


def mail_steps(
    trace: Sequence[TraceStep], history: Sequence[Event], v: Violation | None,
    causes: Sequence[Cause],
) -> tuple[set[int], dict[int, list[str]]]:
    """The steps the mail view draws, and the data events shown in each drawn step.

    Drawn: the violation's step, each cause's step, every step with a data event on an
    object the verdict names (the violation's objects; the pte, or the object freed, of
    each cause), and the two steps around each context switch.  Shown in a step, after the
    kernel path that did it: its data events on those objects (a cause's step with no such
    object: its pte, free and store events) and its causes."""
    keys: set[tuple[Any, ...]] = set(violation_keys(v)) if v is not None else set()
    check = v.check if v is not None else None
    cause_steps = {c.step for c in causes if c.step >= 0}
    prev = previous_details(history)
    for e in history:
        if e[0] in cause_steps and e[3] in (SET_PTE, PTE_CLEAR, FREE, WRITE):
            keys.add(event_keys(e)[0])
    steps: set[int] = set(cause_steps)
    if v is not None and v.step is not None:
        steps.add(v.step)
    for a, b in itertools.pairwise(trace):
        if a.task != b.task:
            steps.update((a.step, b.step))
    shown: dict[int, list[str]] = {}

    def show(step: int, path: str, text: str) -> None:
        line = f"{path}: {text}"
        if line not in shown.setdefault(step, []):
            shown[step].append(line)

    for e, p in zip(history, prev, strict=True):
        step = e[0]
        if step < 0 or not _worth_drawing(e, p, check):
            continue
        if keys:
            if not any(key in keys for key in event_keys(e)):
                continue
            steps.add(step)
        elif e[3] not in (SET_PTE, PTE_CLEAR, FREE, WRITE) or step not in cause_steps:
            continue
        show(step, e[2][0], event_text(e, p))
    for c in causes:
        if c.step >= 0:
            show(c.step, c.where.split(" (")[0], c.what)
    return steps, shown


def render_mail(
    trace: Sequence[TraceStep],
    tasks: Sequence[str],
    history: Sequence[Event],
    v: Violation | None,
    causes: Sequence[Cause],
    *,
    width: int = 100,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> str:
    """Draw ``trace`` as a mail would: only the steps :func:`mail_steps` picks, each with its
    label and the data events it did to the objects of the verdict (lock events folded),
    and one line per folded stretch saying how many steps each task ran there.  A run
    whose verdict names no object and no cause (a user check without objects) is drawn
    whole, still without lock events."""
    steps, shown = mail_steps(trace, history, v, causes)
    if not causes and not (v is not None and violation_keys(v)):
        steps = {s.step for s in trace}  # nothing to focus on (a check naming no object)
    names, col, gutter, cw, row, out = _grid(trace, tasks, trace, width, header)
    ncol, num_w = len(names), gutter - 3
    mark = v.step if v is not None else None
    folded: list[TraceStep] = []

    def fold() -> None:
        if not folded:
            return
        by_task: dict[str, list[TraceStep]] = {}
        for s in folded:
            by_task.setdefault(s.task, []).append(s)
        cells = [""] * ncol
        for task, run in by_task.items():
            cells[col[task]] = _fold_text(run)
        wrapped = [_wrap(c, cw) if c else [] for c in cells]
        for k in range(max(len(w) for w in wrapped)):
            out.append(row([w[k] if k < len(w) else "" for w in wrapped]))
        folded.clear()

    for s in trace:
        if s.step not in steps:
            folded.append(s)
            continue
        fold()
        lines = _wrap(s.label, cw)
        for text in shown.get(s.step, ()):
            lines += _wrap(f"> {text}", cw, "    ")
        if s.step == mark and v is not None:
            tail = f"<<< {v.check}"
            if len(lines) == 1 and len(lines[0]) + 1 + len(tail) <= cw:
                lines = [f"{lines[0]} {tail}"]
            else:
                lines += _wrap(tail, cw)
        for k, text in enumerate(lines):
            cells = [""] * ncol
            cells[col[s.task]] = text
            margin = f"{'*' if s.step == mark else ' '} {str(s.step).rjust(num_w)}" if k == 0 \
                else ""
            out.append(row(cells, margin))
    fold()
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
        assert run is not None
        lines.append(f"*** {v.check} at step {v.step} ({v.task} at {v.label})")
        lines.append(f"    {v.message}")
        lines.extend(f"    {c.describe()}" for c in run.explain())
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
    mail: bool = False,
) -> str:
    """A case's run as a timeline with its header and outcome footer (``mail``: the mail
    view, :func:`render_mail`)."""
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
    if mail and not full:
        run = att.run
        causes = run.explain() if run is not None else []
        history = run.kernel.events() if run is not None else []
        return render_mail(trace, names, history, v, causes, width=width, header=header,
                           footer=outcome_footer(cc, att, expected=expected))
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


def _grid(
    trace: Sequence[TraceStep],
    tasks: Sequence[str],
    drawn: Sequence[TraceStep] | None,
    width: int,
    header: Sequence[str],
) -> tuple[list[str], dict[str, int], int, int, Callable[..., str], list[str]]:
    """The columns both views draw: one per task that runs in ``drawn`` (every task when
    None; in ``tasks`` order, then first appearance), the gutter ("* " + step number), the
    column width, a row formatter, and the first lines (the wrapped header, the task names
    and their rules)."""
    names = list(tasks)
    for s in trace:
        if s.task not in names:
            names.append(s.task)
    if drawn is not None:
        ran = {s.task for s in drawn}
        names = [n for n in names if n in ran]
    names = names or ["-"]
    col = {n: i for i, n in enumerate(names)}
    last_step = trace[-1].step if trace else 0
    gutter = len(str(last_step)) + 3  # "* " + number + " "
    ncol = len(names)
    cw = max(MIN_COLUMN, (width - gutter - len(SEP) * (ncol - 1)) // ncol)

    def row(cells: Sequence[str], margin: str = "") -> str:
        return (margin.ljust(gutter) + SEP.join(c.ljust(cw) for c in cells)).rstrip()

    out: list[str] = []
    for line in header:
        out.extend(_wrap(line, width, "    "))
    if header:
        out.append("")
    out.append(row([n[:cw] for n in names]))
    out.append(row(["-" * cw] * ncol))
    return names, col, gutter, cw, row, out
