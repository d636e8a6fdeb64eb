"""``vmfuzz bench --mutants``: search power on bugs no search code knows.

Each mutant of the fixed model is a patch in ``vmfuzz/_mutants/`` (format: that folder's
README.md) with a witness case.  For each mutant the installed package source (``vmfuzz`` and
its ``strategies`` and ``invariants`` subpackages, wherever pyproject's package-dir installed
them) is copied to a temporary folder and patched there; the witness is replayed on the fixed
model (it must be clean) and on the copy (it must fail with its check), then one campaign per
seed runs as ``python -m vmfuzz fuzz`` in a fresh process whose PYTHONPATH puts the copy first.
Each campaign's ``--json`` names the code it ran, which must be the copy's.  The mutants are
data: nothing imports them and no switch names them, so the search cannot know them.

A mutant whose witness does not fail on its copy (or is not clean on the fixed model) is not
observable and is left out of the kill rate, with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from vmfuzz import _patch
from vmfuzz._progress import Heartbeat, progress_every

MUTANTS_DIR = Path(__file__).resolve().parent / "_mutants"
# The import packages of vmfuzz, and where each lives inside a copy (nested, as installed).
PACKAGES = ("vmfuzz", "vmfuzz.strategies", "vmfuzz.invariants")
# A patch's paths are the repository's: pyproject's package-dir keeps two packages outside
# vmfuzz/ in a checkout.
REPO_DIRS = {"vmfuzz": "vmfuzz", "vmfuzz.strategies": "strategies",
             "vmfuzz.invariants": "invariants"}
REQUIRED_FIELDS = ("mimics", "subsystem", "concurrency-only")
DEFAULT_BUDGET = "1.5Msteps"  # vmfuzz._budget.STANDARD_STEPS: a 60-second campaign's work
# A campaign process is stopped at this much CPU (RLIMIT_CPU): a mutant can make a model step
# that never returns (a retry loop that no longer makes progress, the kernel's soft lockup),
# which no step budget sees.  A 1.5Msteps campaign takes 20-80 CPU-s, its shrink up to 15 min.
CAMPAIGN_CPU_LIMIT = 1800


class MutantError(ValueError):
    """A mutant that cannot be used: its patch or witness is missing, malformed or stale."""


@attrs.frozen
class Mutant:
    name: str
    patch: _patch.Patch
    witness: Path

    @property
    def fields(self) -> dict[str, str]:
        return self.patch.fields()

    @property
    def concurrency_only(self) -> bool:
        return self.fields.get("concurrency-only", "").lower() == "yes"

    @property
    def subsystem(self) -> str:
        return self.fields.get("subsystem", "")

    @property
    def mimics(self) -> str:
        return self.fields.get("mimics", "")

    def witness_check(self) -> str:
        """The check the witness was recorded failing with on the mutant (its ``found``)."""
        try:
            data = json.loads(self.witness.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise MutantError(f"{self.witness.name}: not a JSON case: {e}") from None
        found = data.get("found") if isinstance(data, dict) else None
        if not isinstance(found, dict) or not isinstance(found.get("check"), str):
            raise MutantError(f"{self.witness.name}: a witness is a finding: it needs "
                              "\"found\": {\"check\": ...} and \"expected\": \"clean\"")
        return str(found["check"])


def names(folder: Path = MUTANTS_DIR) -> list[str]:
    """Every mutant in ``folder``, by name."""
    return sorted(p.stem for p in folder.glob("*.patch"))


def load(name: str, folder: Path = MUTANTS_DIR) -> Mutant:
    """The mutant ``name`` (MutantError when its files are missing or its header incomplete)."""
    patch_path = folder / f"{name}.patch"
    witness = folder / f"{name}.json"
    if not patch_path.is_file():
        known = ", ".join(names(folder)) or "none"
        raise MutantError(f"unknown mutant {name!r} (known: {known})")
    if not witness.is_file():
        raise MutantError(f"{name}: no witness case {witness.name}")
    try:
        patch = _patch.parse(patch_path.read_text(encoding="utf-8"))
    except _patch.PatchError as e:
        raise MutantError(f"{patch_path.name}: {e}") from None
    missing = [f for f in REQUIRED_FIELDS if not patch.fields().get(f)]
    if missing:
        raise MutantError(f"{patch_path.name}: header lacks {', '.join(missing)}")
    if patch.fields()["concurrency-only"].lower() not in ("yes", "no"):
        raise MutantError(f"{patch_path.name}: concurrency-only must be yes or no")
    return Mutant(name, patch, witness)


# --------------------------------------------------------------------------- the copy
def installed_roots() -> dict[str, Path]:
    """Where each package of the running vmfuzz was imported from."""
    return {name: Path(importlib.import_module(name).__file__ or "").resolve().parent
            for name in PACKAGES}


def _source_of(repo_path: str, roots: dict[str, Path]) -> Path:
    """The installed file behind a repository path such as ``vmfuzz/kernel/rmap.py``."""
    for package in sorted(PACKAGES, key=len, reverse=True):
        prefix = REPO_DIRS[package] + "/"
        if repo_path.startswith(prefix):
            return roots[package] / repo_path[len(prefix):]
    raise MutantError(f"{repo_path}: not a file of vmfuzz, strategies/ or invariants/")


def patched_files(mutant: Mutant, roots: dict[str, Path] | None = None) -> dict[Path, str]:
    """The patched text of each file the mutant changes, keyed by the installed file
    (MutantError when a hunk does not apply exactly to the installed source)."""
    roots = roots or installed_roots()
    sources = {fp.path: _source_of(fp.path, roots) for fp in mutant.patch.files}
    try:
        texts = _patch.apply(mutant.patch,
                             lambda p: sources[p].read_text(encoding="utf-8"))
    except (_patch.PatchError, OSError) as e:
        raise MutantError(f"{mutant.name}.patch: {e}") from None
    return {sources[p]: text for p, text in texts.items()}


def _ignore(folder: str, entries: list[str]) -> list[str]:
    return [e for e in entries if e == "__pycache__" or e.endswith((".pyc", ".egg-info"))]


def build_copy(mutant: Mutant, dest: Path) -> Path:
    """Copy the installed vmfuzz to ``dest/vmfuzz`` (subpackages nested as installed), apply
    the mutant there and return ``dest`` (the PYTHONPATH entry)."""
    roots = installed_roots()
    patched = patched_files(mutant, roots)
    top = dest / "vmfuzz"
    shutil.copytree(roots["vmfuzz"], top, ignore=_ignore)
    for package in PACKAGES[1:]:
        target = top / package.split(".", 1)[1]
        if roots[package] != target and not roots[package].is_relative_to(roots["vmfuzz"]):
            shutil.copytree(roots[package], target, ignore=_ignore, dirs_exist_ok=True)
    for source, text in patched.items():
        for package in sorted(PACKAGES, key=len, reverse=True):
            if source.is_relative_to(roots[package]):
                rel = source.relative_to(roots[package])
                sub = package.split(".", 1)[1] if "." in package else ""
                (top / sub / rel).write_text(text, encoding="utf-8")
                break
    return dest


@contextmanager
def mutated(mutant: Mutant) -> Iterator[Path]:
    """A temporary patched copy of vmfuzz for ``mutant`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix=f"vmfuzz-mutant-{mutant.name}-") as tmp:
        yield build_copy(mutant, Path(tmp))


def copy_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("VMFUZZ_PROGRESS_EVERY", None)
    return env


def _cpu_limit() -> None:
    """In the child: stop it (SIGXCPU) after CAMPAIGN_CPU_LIMIT seconds of CPU."""
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (CAMPAIGN_CPU_LIMIT, CAMPAIGN_CPU_LIMIT + 10))


def _run(cmd: list[str], copy: Path) -> tuple[int, str, str, float]:
    """Run ``cmd`` on the copy; its exit status, stdout, stderr and CPU seconds (user +
    system, of that process alone: campaigns may run side by side).  It runs in the copy's
    folder: ``python -m``/``-c`` put the current folder first on sys.path, and a checkout's
    own vmfuzz/ there would shadow the copy."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=copy_env(copy), cwd=copy,
                             preexec_fn=_cpu_limit)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (p.returncode, out.read().decode("utf-8", "replace"),
                err.read().decode("utf-8", "replace"), usage.ru_utime + usage.ru_stime)


# A replay of a case in the copy's process, with the code it ran.
_REPLAY = (
    "import json, sys\n"
    "from vmfuzz import corpus\n"
    "from vmfuzz._provenance import provenance\n"
    "r = corpus.replay(corpus.load(sys.argv[1]), check_fix=False)\n"
    "out = r.to_json(); out['vmfuzz'] = provenance()\n"
    "print(json.dumps(out))\n"
)


def _expect_copy(out: dict[str, Any], copy: Path) -> str | None:
    """None when the process's ``vmfuzz`` provenance names the copy, else why not."""
    from vmfuzz._provenance import source_digest

    prov = out.get("vmfuzz") or {}
    want = (copy / "vmfuzz").resolve()
    if Path(str(prov.get("path", ""))).resolve() != want:
        return f"the campaign imported vmfuzz from {prov.get('path')}, not the copy {want}"
    roots = {name: want / name.split(".", 1)[1] if "." in name else want for name in PACKAGES}
    if prov.get("code") != source_digest(roots):
        return "the campaign's code digest is not the copy's"
    return None


def replay_in_copy(copy: Path, case: Path) -> dict[str, Any]:
    """``corpus.replay`` of ``case`` in a process importing the copy (its ``to_json``, or
    ``{"error": ...}``)."""
    rc, out, err, _ = _run([sys.executable, "-c", _REPLAY, str(case.resolve())], copy)
    if rc != 0:
        tail = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
        return {"error": tail}
    data: dict[str, Any] = json.loads(out)
    why = _expect_copy(data, copy)
    return {"error": why} if why else data


def replay_fixed(case: Path) -> dict[str, Any]:
    """The witness on the fixed model, in this process (MutantError if it cannot be read)."""
    from vmfuzz import corpus

    try:
        cc = corpus.load(case)
    except corpus.CorpusError as e:
        raise MutantError(str(e)) from None
    return corpus.replay(cc, check_fix=False).to_json()


def witness_verdicts(mutant: Mutant, copy: Path) -> dict[str, Any]:
    """The witness on the fixed model (must be ``fixed``: clean) and on the mutant (must be
    ``still fails`` with the witness's check); ``observable`` says whether both hold."""
    check = mutant.witness_check()
    fixed = replay_fixed(mutant.witness)
    on_mutant = replay_in_copy(copy, mutant.witness)
    seen = (on_mutant.get("violation") or {}).get("check")
    why = None
    if "error" in on_mutant:
        why = f"the witness could not be replayed on the mutant: {on_mutant['error']}"
    elif on_mutant.get("verdict") != "still fails" or seen != check:
        why = (f"the witness does not fail with {check} on the mutant: "
               f"{on_mutant.get('summary') or on_mutant.get('message')}")
    elif fixed.get("verdict") != "fixed":
        why = f"the witness is not clean on the fixed model: {fixed.get('summary')}"
    return {"check": check, "on_mutant": on_mutant.get("summary") or on_mutant.get("error"),
            "on_fixed": fixed.get("summary"), "observable": why is None, "why_not": why}


# --------------------------------------------------------------------------- campaigns
def parse_budget(text: str) -> list[str]:
    """A work budget as ``vmfuzz fuzz`` options: model steps (``1.5Msteps``, the same search
    on any machine) or CPU time (``60cpu``) -> ``--budget``; examples (``300ex``) ->
    ``--max-examples``.  ValueError for anything else (wall time is not a work budget)."""
    from vmfuzz._budget import BudgetError
    from vmfuzz._budget import parse_budget as campaign_budget

    t = text.strip().lower().replace(" ", "")
    for suffix in ("examples", "ex"):
        n = t[: -len(suffix)]
        if t.endswith(suffix) and n.isdigit() and 0 < int(n) <= 10**9:
            return ["--max-examples", str(int(n))]
    try:
        kind = campaign_budget(text).kind
    except BudgetError as e:
        raise ValueError(f"{e} (a work budget: steps such as 1.5Msteps, CPU time such as "
                         "60cpu, or examples such as 300ex)") from None
    if kind == "wall":
        raise ValueError(f"{text!r} is wall time, which moves with the machine's load: give "
                         "model steps (1.5Msteps), CPU time (60cpu) or examples (300ex)")
    return ["--budget", text.strip()]


def parse_seeds(text: str) -> list[int]:
    """``K`` (seeds 0..K-1, as the rest of vmfuzz bench counts them) or a list ``0,3,5-7``."""
    from vmfuzz._zoo import parse_seeds as seed_list

    t = text.strip()
    if t.isdigit():
        k = int(t)
        if not 1 <= k <= 1000:
            raise ValueError(f"{k}: a number of seeds (0..K-1) must be from 1 to 1000; a "
                             "list names seeds: 3-3, 0,3 or 5-7")
        return list(range(k))
    return seed_list(t)


def campaign(copy: Path, seed: int, budget: list[str]) -> dict[str, Any]:
    """One ``vmfuzz fuzz`` campaign on the copy: killed or not, the check, the work to the
    first failure and the shrunk size."""
    cmd = [sys.executable, "-m", "vmfuzz", "fuzz", "--seed", str(seed), *budget,
           "--workers", "1", "--no-save", "--json"]
    rc, out, err, cpu = _run(cmd, copy)
    run: dict[str, Any] = {"seed": seed, "cpu_seconds": round(cpu, 2)}
    if rc not in (0, 1):
        import signal

        if rc == -signal.SIGXCPU or (rc == -signal.SIGKILL and cpu >= CAMPAIGN_CPU_LIMIT):
            return {**run, "error": f"stopped at the CPU limit of {CAMPAIGN_CPU_LIMIT} s: "
                    "a model step that never returns? (vmfuzz show the mutant's witness)"}
        tail = (err.strip().splitlines() or [f"exit status {rc}"])[-1]
        return {**run, "error": tail}
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        return {**run, "error": f"no JSON on stdout (exit status {rc})"}
    why = _expect_copy(data, copy)
    if why:
        return {**run, "error": why}
    shrunk = data.get("shrunk") or None
    return {
        **run,
        "killed": bool(data.get("found")),
        "check": data.get("invariant"),
        "examples": data.get("examples"),
        "examples_to_find": data.get("first_failure_examples") if data.get("found") else None,
        "steps_to_find": data.get("first_failure_steps") if data.get("found") else None,
        "found_by": data.get("found_by") if data.get("found") else None,
        "steps": data.get("steps"),
        "campaign_cpu_seconds": data.get("cpu_seconds"),
        "shrunk": None if shrunk is None else {
            "tasks": shrunk.get("tasks"), "ops": shrunk.get("ops"),
            "preemptions": shrunk.get("preemptions")},
        "message": data.get("message"),
    }


# --------------------------------------------------------------------------- the benchmark
def bench(selected: list[Mutant], seeds: list[int], budget: list[str], workers: int = 1,
          beat: Heartbeat | None = None) -> dict[str, Any]:
    """Every selected mutant: its witness on both models, then a campaign per seed (up to
    ``workers`` campaigns at once; each is deterministic, so the result does not depend on
    it).  ``beat``: where progress lines go."""
    def say(text: str) -> None:
        if beat is not None:
            beat.line(text)

    n = len(selected)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vmfuzz-mutants-") as tmp:
        copies: dict[int, Path] = {}
        for i, mutant in enumerate(selected):
            row: dict[str, Any] = {
                "mutant": mutant.name, "subsystem": mutant.subsystem,
                "concurrency_only": mutant.concurrency_only, "mimics": mutant.mimics,
                "files": [fp.path for fp in mutant.patch.files], "runs": []}
            rows.append(row)
            try:
                dest = Path(tmp) / mutant.name
                dest.mkdir()
                copy = build_copy(mutant, dest)
                row["witness"] = witness_verdicts(mutant, copy)
            except MutantError as e:
                row["witness"] = {"observable": False, "why_not": str(e)}
            w = row["witness"]
            if w["observable"]:
                copies[i] = copy
                say(f"[{i + 1}/{n}] {mutant.name}: witness fails with {w['check']} on the "
                    "mutant, clean on the fixed model")
            else:
                say(f"[{i + 1}/{n}] {mutant.name}: NOT observable: {w['why_not']}")
        jobs = [(i, seed) for i in copies for seed in seeds]
        done = 0
        running: set[str] = set()
        if beat is not None:
            beat.status = lambda: (f"{done} of {len(jobs)} campaigns done; running: "
                                   + ", ".join(sorted(running)))

        def one(job: tuple[int, int]) -> dict[str, Any]:
            i, seed = job
            tag = f"{selected[i].name} seed {seed}"
            running.add(tag)
            try:
                return campaign(copies[i], seed, budget)
            finally:
                running.discard(tag)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for (i, seed), r in zip(jobs, pool.map(one, jobs), strict=True):
                rows[i]["runs"].append(r)
                done += 1
                say(f"[{done}/{len(jobs)}] {selected[i].name} seed {seed}: {_run_words(r)}")
    return {"mutants": rows, "summary": summarize(rows, seeds)}


def _run_words(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"error: {r['error']}"
    if not r["killed"]:
        return f"survived {r['examples']} examples ({r['cpu_seconds']:.1f} s CPU)"
    s = r["shrunk"] or {}
    return (f"killed by {r['check']} after {r['steps_to_find']} steps, "
            f"{r['examples_to_find']} examples "
            f"({r['cpu_seconds']:.1f} s CPU; shrunk to {s.get('tasks')} tasks, "
            f"{s.get('ops')} ops, {s.get('preemptions')} preemptions)")


def summarize(rows: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    observable = [r for r in rows if r["witness"].get("observable")]
    per_seed = {}
    for seed in seeds:
        killed = sum(1 for r in observable for run in r["runs"]
                     if run["seed"] == seed and run.get("killed"))
        per_seed[str(seed)] = {"killed": killed, "observable": len(observable),
                               "kill_rate": round(killed / len(observable), 3)
                               if observable else None}
    runs = [run for r in observable for run in r["runs"]]
    killed = sum(1 for run in runs if run.get("killed"))
    return {
        "mutants": len(rows),
        "observable": len(observable),
        "concurrency_only": sum(1 for r in rows if r["concurrency_only"]),
        "errors": sum(1 for run in runs if "error" in run),
        "per_seed": per_seed,
        "runs": len(runs),
        "killed_runs": killed,
        "kill_rate": round(killed / len(runs), 3) if runs else None,
        "cpu_seconds": round(sum(run["cpu_seconds"] for run in runs), 1),
    }


def table(result: dict[str, Any]) -> str:
    lines = [f"{'mutant':40} {'subsystem':10} {'conc':4} {'witness':18} runs"]
    for r in result["mutants"]:
        w = r["witness"]
        wit = w.get("check", "-") if w.get("observable") else "NOT observable"
        cells = []
        for run in r["runs"]:
            if "error" in run:
                cells.append(f"s{run['seed']}: error")
            elif run["killed"]:
                s = run["shrunk"] or {}
                steps = run.get("steps_to_find")
                at = f"{steps / 1000:.0f}k steps, " if isinstance(steps, int) else ""
                cells.append(f"s{run['seed']}: {run['check']} @{at}{run['examples_to_find']}ex "
                             f"({s.get('tasks')}t/{s.get('ops')}op/{s.get('preemptions')}p)")
            else:
                cells.append(f"s{run['seed']}: survived")
        conc = "yes" if r["concurrency_only"] else "no"
        lines.append(f"{r['mutant']:40} {r['subsystem']:10} {conc:4} {wit:18} "
                     + "; ".join(cells))
        if not w.get("observable"):
            lines.append(f"    {w.get('why_not')}")
    s = result["summary"]
    lines.append("")
    lines.append(f"{s['mutants']} mutants, {s['observable']} observable, "
                 f"{s['concurrency_only']} concurrency-only")
    for seed, v in s["per_seed"].items():
        rate = "-" if v["kill_rate"] is None else f"{100 * v['kill_rate']:.0f}%"
        lines.append(f"seed {seed}: killed {v['killed']} of {v['observable']} observable "
                     f"({rate})")
    rate = "-" if s["kill_rate"] is None else f"{100 * s['kill_rate']:.0f}%"
    lines.append(f"all seeds: {s['killed_runs']} of {s['runs']} campaigns killed their "
                 f"mutant ({rate}), {s['cpu_seconds']} s of CPU in campaigns")
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``vmfuzz bench`` adds for the mutation benchmark."""
    p.add_argument("--mutants", action="store_true",
                   help="the mutation benchmark: each mutant of vmfuzz/_mutants/ applied to a "
                   "temporary copy, its witness replayed, one campaign per seed (--seeds K or "
                   "a list 0,3,5-7; default 2) with a work budget (--budget model steps, "
                   f"CPU time or examples: 1.5Msteps, 60cpu, 300ex; default {DEFAULT_BUDGET}), "
                   "--workers campaigns at once "
                   "(default 1); reports the kill rate")
    p.add_argument("--mutant", action="append", default=[], metavar="NAME",
                   help="only this mutant (implies --mutants; repeatable; default all)")


def run(args: argparse.Namespace) -> int:
    """``vmfuzz bench --mutants``."""
    def usage(msg: str) -> int:
        sys.stderr.write(f"vmfuzz bench: error: {msg}\n")
        return 2

    try:
        seeds = parse_seeds(str(args.seeds)) if args.seeds is not None else [0, 1]
    except ValueError as e:
        return usage(f"--seeds: {e}")
    try:
        budget = parse_budget(args.budget or DEFAULT_BUDGET)
    except ValueError as e:
        return usage(f"--budget: {e}")
    try:
        selected = [load(name) for name in (args.mutant or names())]
    except MutantError as e:
        return usage(str(e))
    if not selected:
        return usage(f"no mutants in {MUTANTS_DIR}")
    try:
        every = progress_every()
    except ValueError as e:
        return usage(str(e))
    workers = args.workers or 1
    if not 1 <= workers <= 64:
        return usage("--workers must be from 1 to 64")
    sys.stderr.write(f"mutation benchmark: {len(selected)} mutants x {len(seeds)} seeds, "
                     f"fuzz {' '.join(budget)} each, {workers} at a time\n")
    with Heartbeat(lambda: "replaying the witnesses", every=every) as beat:
        result = bench(selected, seeds, budget, workers, beat)
        beat.clear()
    result["settings"] = {"seeds": seeds, "budget": args.budget or DEFAULT_BUDGET,
                          "fuzz_options": budget, "workers": workers}
    if getattr(args, "out", None):
        from vmfuzz._write import write_text

        write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(table(result))
    return 0
