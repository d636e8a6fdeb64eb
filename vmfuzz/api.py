"""The public API for fuzzing your own property: :func:`check` and :func:`fuzz_test`.

``check`` registers a per-step check (family ``user``) that the monitor runs after every
scheduler step, with the deferral rules of the built-in checks; ``fuzz_test`` makes a pytest
test that runs a whole campaign (:func:`vmfuzz.campaign.fuzz`: Hypothesis, then the vmfuzz
shrinker), and on a failure saves the case and fails with the race diagram and the replay
command.  ``docs/api.md`` is the reference, with a complete example.

Registered user checks always run, in every run of the process (campaign, pool, shrinker,
replay): a saved case then replays the same way wherever the same checks are registered, with
no list of checks to keep in the case.  ``checks=`` names those a campaign relies on (an
unregistered one is an error, not a campaign that cannot fail).

Hypothesis is imported only when a test runs (``import vmfuzz`` stays light).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from vmfuzz.invariants import DEFER, Check, CheckView, register_user
from vmfuzz.invariants._registry import UserKeyHook, UserStepHook
from vmfuzz.kernel import KernelConfig

if TYPE_CHECKING:
    import pytest

    from vmfuzz.campaign import CampaignResult

__all__ = ["DEFER", "CheckView", "check", "fuzz_test"]

DEFAULT_CORPUS = "corpus/found"


def check(
    name: str,
    *,
    doc: str,
    mirrors: str,
    page: UserKeyHook | None = None,
    entry: UserKeyHook | None = None,
    mm: UserKeyHook | None = None,
    each_step: UserStepHook | None = None,
) -> Check:
    """Register check ``name``, run after every scheduler step of every run in this process.

    ``doc`` is one line (what holds); ``mirrors`` the kernel check it mirrors ("function:
    BUG_ON(...)").  Hooks, at least one, each given a :class:`CheckView` ``v``:

    * ``page(v, pfn)``, ``entry(v, e)``, ``mm(v, mm_id)``: for each frame, swap entry or mm the
      step touched (through ``k.set_pte_at``, ``k.touch_page`` ...), and each key deferred;
    * ``each_step(v)``: after every step.

    A hook returns None (holds), :data:`DEFER` (broken, but legitimately: inside the critical
    section that updates it, e.g. ``v.atomic("mm", mm_id)``; checked again after every later
    step until it holds or returns a violation), a message (``str``) or a
    :class:`vmfuzz.Violation` (reported under ``name``).  An exception from a hook is a
    ``model_error`` finding.

    Names are unique (lower case, digits, ``_``: a saved case names the check it failed): a
    second registration of ``name`` raises ``ValueError``, unless it is the same definition
    again (the same module imported twice).  Returns the registered :class:`Check`.
    """
    return register_user(
        name, doc=doc, mirrors=mirrors, page=page, entry=entry, mm=mm, each_step=each_step
    )


# ---------------------------------------------------------------------------- fuzz_test
def fuzz_test(
    config: KernelConfig | None = None,
    *,
    bugs: Iterable[str] = (),
    ops: Sequence[str] | None = None,
    plugins: Sequence[str] = (),
    checks: Sequence[str | Check] = (),
    max_examples: int | None = None,
    step_budget: int | None = None,
    budget: float | None = None,
    seed: int | None = None,
    scheduler: str = "mixed",
    corpus: str | os.PathLike[str] | None = DEFAULT_CORPUS,
) -> Callable[[pytest.FixtureRequest], None]:
    """A pytest test function that fuzzes ``config`` (plus ``bugs``) and fails on a finding.

    Assign it to a ``test_*`` name in a test module: ``test_mine = vmfuzz.fuzz_test(...)``.

    * ``ops``: the operations drawn (default all); ``plugins``: modules or ``.py`` files
      (relative to the rootdir) imported first (:func:`vmfuzz.plugins.load_plugins`);
      ``checks``: checks the campaign relies on (names or :class:`Check`), see :func:`check`.
    * Budgets: ``max_examples`` Hypothesis examples, ``step_budget`` scheduler steps (checked
      before each example and each round of the pool's mutants: deterministic), ``budget``
      seconds; the first reached ends the campaign.  None of them given: the active Hypothesis
      profile's ``max_examples`` (``--hypothesis-profile``).
    * ``seed``: default ``--hypothesis-seed`` if given (a non-integer is hashed), else 0.
      The same seed runs the same campaign.
    * A failure is shrunk, saved under ``corpus`` (relative to the rootdir; None: the test's
      ``tmp_path``) and reported with the race diagram and ``vmfuzz replay PATH``.
    """
    base = config if config is not None else KernelConfig()
    cfg = attrs.evolve(base, bugs=base.bugs | frozenset(bugs))
    if isinstance(checks, str) or isinstance(plugins, str) or isinstance(ops, str):
        raise TypeError("fuzz_test: checks, plugins and ops are lists of names, not a string")
    names = [c.name if isinstance(c, Check) else c for c in checks]
    for label, value in (("max_examples", max_examples), ("step_budget", step_budget)):
        if value is not None and value < 1:
            raise ValueError(f"fuzz_test: {label} must be >= 1, not {value}")
    if budget is not None and budget <= 0:
        raise ValueError(f"fuzz_test: budget must be positive, not {budget}")
    op_list = list(ops) if ops is not None else None
    plugin_list = list(plugins)

    def test(request: pytest.FixtureRequest) -> None:
        import pytest

        from vmfuzz.campaign import fuzz, user_checks
        from vmfuzz.kernel.bugs import unknown_bugs
        from vmfuzz.kernel.ops import OPS
        from vmfuzz.plugins import PluginError, load_plugins

        rootdir = Path(request.config.rootpath)
        try:
            load_plugins([_rooted(p, rootdir) for p in plugin_list])
            user_checks(names)
        except (PluginError, ValueError) as e:
            pytest.fail(f"vmfuzz.fuzz_test: {e}", pytrace=False)
        bad = unknown_bugs(sorted(cfg.bugs))
        unknown_ops = sorted(set(op_list or ()) - set(OPS))
        if bad is None and unknown_ops:
            bad = (f"unknown operation(s) {', '.join(unknown_ops)}; registered: "
                   f"{', '.join(sorted(OPS))}")
        if bad is not None:
            pytest.fail(f"vmfuzz.fuzz_test: {bad}", pytrace=False)
        seed_value = campaign_seed(seed, request.config.getoption("hypothesis_seed", None))
        n = max_examples
        if n is None and step_budget is None and budget is None:
            from hypothesis import settings

            active = settings.default  # the loaded profile (--hypothesis-profile)
            n = active.max_examples if active is not None else 100
        result = fuzz(
            cfg,
            scheduler=scheduler,
            seed_value=seed_value,
            budget=budget,
            max_examples=n,
            ops=op_list,
            checks=names,
            step_budget=step_budget,
        )
        request.node.user_properties.append(("vmfuzz", _summary(result, seed_value)))
        if not result.found:
            return
        folder = (
            Path(request.getfixturevalue("tmp_path")) if corpus is None
            else rootdir / corpus
        )
        meta = {
            "found_by": f"vmfuzz.fuzz_test {request.node.nodeid}",
            "seed": seed_value,
            "stream": 0,
            "user_checks": list(result.checks),
        }
        needs = defining_files(result)
        pytest.fail(failure_report(result, seed_value, folder, meta, needs), pytrace=False)

    test.__doc__ = (
        f"vmfuzz campaign: bugs {sorted(cfg.bugs) or 'none'}, checks {names or 'built-in'}"
    )
    return test


def campaign_seed(seed: int | None, forced: object) -> int:
    """The campaign seed: ``seed`` if given, else ``--hypothesis-seed`` (``forced``; a value
    that is not an integer is hashed), else 0."""
    if seed is not None:
        return seed
    if forced is None:
        return 0
    try:
        return int(str(forced))
    except ValueError:
        return random.Random(str(forced)).getrandbits(32)


def _rooted(plugin: str, rootdir: Path) -> str:
    """A ``.py`` plugin path relative to the rootdir; a module name unchanged."""
    if plugin.endswith(".py") or "/" in plugin or os.sep in plugin:
        return str(rootdir / plugin)
    return plugin


def defining_files(result: CampaignResult) -> list[Path]:
    """Files outside vmfuzz, not loaded as plugins, that registered the failure's operations
    or its check (the test module, usually): another process must load them as plugins
    (``--plugin FILE``) to read the case."""
    from vmfuzz import plugins
    from vmfuzz.invariants import CHECKS
    from vmfuzz.kernel.ops import OPS

    loaded = getattr(plugins, "loaded", None)  # plugins record themselves in the case
    plugin_modules = {p.module for p in loaded()} if callable(loaded) else set()

    def outside(module: str) -> bool:
        return bool(module) and module != "vmfuzz" and not module.startswith("vmfuzz.") \
            and not module.startswith("vmfuzz_plugin_") and module not in plugin_modules

    where: list[tuple[str, str | None]] = []  # (module, file)
    if result.case is not None:
        for task in result.case.tasks:
            for call in task.ops:
                spec = OPS.get(call.op)
                if spec is not None:
                    module = getattr(spec.fn, "__module__", "") or ""
                    where.append((module, getattr(sys.modules.get(module), "__file__", None)))
    v = result.failure.violation if result.failure else None
    chk = CHECKS.get(v.check) if v is not None else None
    if chk is not None and chk.origin:
        where += [(o[0], o[1]) for o in chk.origin if o is not None]
    files = [f for module, f in where if f and outside(module)]
    return list(dict.fromkeys(Path(f).resolve() for f in files))


def _summary(result: CampaignResult, seed_value: int) -> dict[str, Any]:
    return {
        "seed": seed_value,
        "found": result.invariant,
        "examples": result.examples,
        "mutant_runs": result.stats.mutant_runs if result.stats else 0,
        "steps": result.steps,
        "checks": list(result.checks),
    }


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when below it (to paste into a shell)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def failure_report(
    result: CampaignResult,
    seed_value: int,
    folder: Path | None,
    meta: dict[str, Any],
    needs: Sequence[Path] = (),
) -> str:
    """Save the failure under ``folder`` (None: not saved) and describe it as ``vmfuzz fuzz``
    prints it: the violation, the sizes, the tasks, the race diagram, the replay command
    (loading ``needs``, the files that registered what the case uses, with ``--plugin``)."""
    from vmfuzz._fallback import save_case
    from vmfuzz.corpus import NotReproducible
    from vmfuzz.timeline import render_timeline

    assert result.failure is not None and result.case is not None
    v = result.failure.violation
    stats = result.stats
    lines = [
        f"vmfuzz found: {v.describe()}",
        f"campaign: seed {seed_value}, {result.examples} examples"
        + (f" ({stats.first_failure_example} to the first failure, the rest shrinking it)"
           if stats and stats.first_failure_example is not None
           and stats.first_failure_example < result.examples else "")
        + (f" + {stats.mutant_runs} pool mutant runs" if stats else "")
        + f", {result.steps} scheduler steps in {result.seconds:.1f}s",
    ]
    shrunk = result.shrunk() or {}
    lines.append(
        f"shrunk to {shrunk.get('tasks')} tasks, {shrunk.get('ops')} operations, "
        f"{shrunk.get('steps')} steps, {shrunk.get('preemptions')} preemptions"
        + (" (minimal preemptions verified)" if result.minimal_preemptions else "")
    )
    if result.clock_hit:
        lines.append(result.clock_note())
    for t in result.case.tasks:
        ops = "; ".join(c.describe() for c in t.ops)
        lines.append(f"  {t.name} (from step {t.start}): {ops}")
    width = min(shutil.get_terminal_size((100, 24)).columns, 160)
    lines.append(
        render_timeline(
            result.failure.trace,
            [t.name for t in result.case.tasks],
            width=width,
            mark_step=v.step,
            footer=[f"violated: {v.describe()}"],
        )
    )
    if folder is not None:
        try:
            saved = save_case(result.case, v, folder, meta)
        except NotReproducible as e:
            lines.append(f"not saved: the shrunk case does not replay on its own: {e}")
        else:
            if saved.corpus_error is not None:
                lines.append(f"the corpus cannot be written ({saved.corpus_error})")
            if saved.path is None:
                lines.append(f"nor any fallback folder; the case file:\n{saved.text}")
                return "\n".join(lines)
            path = saved.path
            shown = _shown(path)
            flags = "".join(f" --plugin {_shown(f)}" for f in needs)
            lines.append(
                f"saved: {shown}\nreplay: vmfuzz replay{flags} {shown}\n"
                f"show:   vmfuzz show{flags} {shown}"
            )
    return "\n".join(lines)
