"""The recorded hot-path workload: a campaign's own runs, kept as decision replays.

A campaign's runs (its machine examples, their amplified schedules, the pool's mutants) are what
the fuzzer spends its time on; a benchmark that replays exactly those, with the same decisions,
measures the model, the scheduler and the checks as campaigns use them, and a figure taken on
one version of the code compares with one taken on another.  The file is versioned: a change of
the model that moves a run's trace is seen (the recorded trace hash no longer matches) instead
of silently measuring other work; ``python -m vmfuzz._workload`` records a new version.

The file (``workloads/hotpath-vN.json``, JSON only) holds how it was recorded and one object
per run: its config, tasks, decisions, step count and trace hash (checks on, as recorded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from vmfuzz.case import Case, OpCall, Run, Schedule, TaskSpec
from vmfuzz.kernel import KernelConfig

VERSION = 2
PATH = Path(__file__).parent / "workloads" / f"hotpath-v{VERSION}.json"
# How the committed file was recorded (python -m vmfuzz._workload).
RECORD_SEED = 1
RECORD_EXAMPLES = 120
RECORD_STRIDE = 6  # every sixth run: about 800 runs, a few seconds per replay of all


@attrs.frozen
class WorkloadRun:
    """One recorded run: the case (decisions schedule) and what replaying it gave."""

    case: Case
    steps: int
    trace_sha256: str


@attrs.frozen
class Workload:
    version: int
    recorded: str  # the campaign the runs came from
    runs: tuple[WorkloadRun, ...]

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.runs)


def _case_json(case: Case) -> dict[str, Any]:
    return {
        "config": case.config.to_json(),
        "tasks": [
            {"name": t.name, "start": t.start,
             "ops": [[c.op, dict(c.args)] for c in t.ops]}
            for t in case.tasks
        ],
        "decisions": list(case.schedule.decisions),
        "max_steps": case.max_steps,
    }


def _case_from(d: dict[str, Any]) -> Case:
    tasks = tuple(
        TaskSpec(t["name"], tuple(OpCall(op, dict(args)) for op, args in t["ops"]), t["start"])
        for t in d["tasks"]
    )
    return Case(
        KernelConfig.from_json(d["config"]), tasks,
        Schedule("decisions", decisions=tuple(d["decisions"])), d["max_steps"],
    )


def load(path: Path = PATH) -> Workload:
    """Read a workload file (JSON)."""
    data = json.loads(path.read_text())
    runs = tuple(
        WorkloadRun(_case_from(r["case"]), r["steps"], r["trace_sha256"]) for r in data["runs"]
    )
    return Workload(data["version"], data["recorded"], runs)


def dump(w: Workload, path: Path) -> None:
    """Write ``w`` as JSON, one run per line (diffs stay readable)."""
    lines = [
        json.dumps({"case": _case_json(r.case), "steps": r.steps, "trace_sha256": r.trace_sha256},
                   sort_keys=True, separators=(",", ":"))
        for r in w.runs
    ]
    head = json.dumps({"version": w.version, "recorded": w.recorded})[:-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + ', "runs": [\n' + ",\n".join(lines) + "\n]}\n")


@contextmanager
def _capturing(out: list[Case]) -> Iterator[None]:
    """Collect every case a campaign runs: machine examples and ``execute`` calls."""
    import vmfuzz.case as case_mod
    import vmfuzz.pool as pool_mod
    from vmfuzz.strategies.machine import KernelMachine

    real_execute = case_mod.execute
    real_teardown = KernelMachine.teardown

    def execute(case: Case, source: Any = None, **kw: Any) -> Run:
        run = real_execute(case, source, **kw)
        out.append(attrs.evolve(
            case, schedule=Schedule("decisions", decisions=tuple(run.sched.decisions))))
        return run

    def teardown(self: KernelMachine) -> None:
        try:
            real_teardown(self)
        finally:
            if self.threads:
                out.append(self.case())

    case_mod.execute = execute
    pool_mod.execute = execute
    KernelMachine.teardown = teardown  # type: ignore[method-assign]
    try:
        yield
    finally:
        case_mod.execute = real_execute
        pool_mod.execute = real_execute
        KernelMachine.teardown = real_teardown  # type: ignore[method-assign]


def record(
    seed: int = RECORD_SEED, max_examples: int = RECORD_EXAMPLES, stride: int = RECORD_STRIDE
) -> Workload:
    """Run ``fuzz --seed SEED --max-examples N`` on the fixed kernel, keep every ``stride``-th
    run it made (in the order it made them) as a decision replay, and replay each once for its
    steps and trace hash."""
    from vmfuzz.campaign import fuzz
    from vmfuzz.case import execute

    cases: list[Case] = []
    with _capturing(cases):
        fuzz(KernelConfig(), seed_value=seed, max_examples=max_examples, budget=None)
    runs = []
    for c in cases[::stride]:
        if not c.tasks:
            continue
        run = execute(c)
        if run.outcome.kind != "clean":
            continue  # a fixed workload of runs that end normally
        runs.append(WorkloadRun(c, run.outcome.steps, run.outcome.trace_sha256))
    return Workload(
        VERSION,
        f"fuzz --seed {seed} --max-examples {max_examples}, fixed kernel, every {stride}th run",
        tuple(runs))


@attrs.frozen
class Pass:
    """One replay of the whole workload."""

    steps: int
    cpu: float
    wall: float
    mismatches: int  # runs that diverged, or whose trace differs from the recorded one


def replay(w: Workload, *, checks: bool, verify: bool = True) -> Pass:
    """Replay every run once (lockdep and the trace on, as campaigns run them)."""
    from vmfuzz._scheduler import ScheduleDiverged
    from vmfuzz.case import execute

    steps = bad = 0
    c0, t0 = time.process_time(), time.perf_counter()
    for r in w.runs:
        try:
            run = execute(r.case, invariants=checks)
        except ScheduleDiverged:  # the model changed under the recording: another run now
            bad += 1
            continue
        steps += run.outcome.steps
        if verify and checks and run.outcome.trace_sha256 != r.trace_sha256:
            bad += 1
    return Pass(steps, time.process_time() - c0, time.perf_counter() - t0, bad)


def interleaved(
    passes: Sequence[tuple[str, Callable[[], Pass]]], reps: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[Pass]]:
    """Run each named pass ``reps`` times, alternating (A B A B ...): load affects all alike."""
    out: dict[str, list[Pass]] = {name: [] for name, _ in passes}
    for i in range(reps):
        for name, fn in passes:
            if progress is not None:
                progress(f"{name} {i + 1}/{reps}")
            out[name].append(fn())
    return out


if __name__ == "__main__":
    import sys

    w = record()
    dump(w, PATH)
    sys.stderr.write(f"{PATH}: {len(w.runs)} runs, {w.steps} steps ({w.recorded})\n")
