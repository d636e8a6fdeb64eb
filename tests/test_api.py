"""The public API (docs/api.md): user checks, ``fuzz_test``, step budgets, seeds and profiles.

The documented example runs as it is printed (read from docs/api.md) in a pytest of its own, so
its failure is observed: the race diagram, the saved case, and the case replayed in a fresh
process.  Checks registered here are taken out again by the ``user_check`` fixture, so no other
test's campaign runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from vmfuzz.invariants import CHECKS, install, unregister_user

import vmfuzz
from vmfuzz import LockDep, Scheduler
from vmfuzz.api import campaign_seed
from vmfuzz.campaign import fuzz
from vmfuzz.kernel import Kernel, KernelConfig
from vmfuzz.kernel.mm_types import PresentPte
from vmfuzz.schedules import NonPreemptive

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"
TIMEOUT = 600  # seconds per subprocess: a guard against a hang, not a budget


def docs_example() -> str:
    """The first python block under "## A complete example" in docs/api.md."""
    text = API_MD.read_text(encoding="utf-8")
    section = text.split("## A complete example", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "docs/api.md: no python block in 'A complete example'"
    return m.group(1)


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pytest ARGS`` in ``folder`` (its own rootdir), in a fresh process."""
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("CI", None)  # Hypothesis's ci profile would change the default example count
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=folder, capture_output=True, text=True, timeout=TIMEOUT, env=env,
    )


@pytest.fixture
def user_check() -> Iterator[Callable[..., Any]]:
    """``user_check(name, **kw)`` registers a check for this test only."""
    added: list[str] = []

    def register(name: str, **kw: Any) -> Any:
        kw.setdefault("doc", f"test check {name}")
        kw.setdefault("mirrors", "nothing: a test")
        c = vmfuzz.check(name, **kw)
        added.append(name)
        return c

    yield register
    for name in added:
        if name in CHECKS:
            unregister_user(name)


# ------------------------------------------------------------------ the documented example
@pytest.mark.long
def test_docs_example_finds_its_planted_bug(tmp_path: Path) -> None:
    """The example fails with the race diagram and the replay command, saves the case, and a
    fresh process that loads the test module replays it to the same check and trace.  The same
    file with the update made atomic (the bug fixed) passes: the check is not a false alarm."""
    source = docs_example()
    assert len(source.splitlines()) <= 25
    (tmp_path / "test_rss.py").write_text(source, encoding="utf-8")
    proc = run_pytest(tmp_path, "test_rss.py")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "vmfuzz found: rss_counter: mm" in out
    assert "campaign: seed 0," in out
    assert re.search(r"\n\s+T\d+\s+\| T\d+\n", out), out  # the diagram's two task columns
    assert re.search(r"\n\* +\d+ ", out), out  # the step where the check fired
    assert "violated: rss_counter:" in out
    m = re.search(r"replay: vmfuzz replay --plugin test_rss.py (corpus/found/\S+\.json)", out)
    assert m, out
    case = tmp_path / m.group(1)
    assert case.is_file()

    replay = subprocess.run(
        [sys.executable, "-c",
         "import sys\n"
         "from vmfuzz.plugins import load_plugins\n"
         "from vmfuzz.corpus import load, replay\n"
         "load_plugins(['test_rss.py'])\n"
         "r = replay(load(sys.argv[1]))\n"
         "v = r.attempt.run.outcome.violation if r.attempt.run else None\n"
         "print(v.check if v else r.observed, r.trace_matches)\n",
         str(case)],
        cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert replay.stdout.split() == ["rss_counter", "True"], replay.stdout + replay.stderr

    fixed = source.replace(
        '        yield "sync_mm_rss:read"\n        m.rss = rss',
        '        m.rss = rss\n        yield "sync_mm_rss:read"',
    )
    assert fixed != source
    (tmp_path / "test_rss.py").write_text(fixed, encoding="utf-8")
    (tmp_path / "corpus").rename(tmp_path / "found-before")  # not collected as replay items
    proc = run_pytest(tmp_path, "test_rss.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ seeds and profiles
SEED_TESTS = """\
from hypothesis import settings
import vmfuzz

test_default = vmfuzz.fuzz_test(max_examples=2, corpus=None)
test_explicit = vmfuzz.fuzz_test(max_examples=2, seed=3, corpus=None)

def test_profile(record_property):
    record_property("profile", settings.get_current_profile_name())
"""


def _properties(xml: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        out[case.get("name", "")] = props
    return out


def test_hypothesis_seed_and_profile_options(tmp_path: Path) -> None:
    """``--hypothesis-seed`` changes the campaign seed (an explicit ``seed=`` wins) and the
    campaign with it; ``--hypothesis-profile=vmfuzz-ci`` loads vmfuzz's profile."""
    (tmp_path / "test_seeds.py").write_text(SEED_TESTS, encoding="utf-8")
    plain = run_pytest(tmp_path, "test_seeds.py", "--junitxml=plain.xml")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    forced = run_pytest(tmp_path, "test_seeds.py", "--junitxml=forced.xml",
                        "--hypothesis-seed=7", "--hypothesis-profile=vmfuzz-ci")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    a = _properties(tmp_path / "plain.xml")
    b = _properties(tmp_path / "forced.xml")
    assert "'seed': 0," in a["test_default"]["vmfuzz"]
    assert "'seed': 7," in b["test_default"]["vmfuzz"]
    assert "'seed': 3," in a["test_explicit"]["vmfuzz"]
    assert "'seed': 3," in b["test_explicit"]["vmfuzz"]
    def steps(props: dict[str, dict[str, str]]) -> str:
        m = re.search(r"'steps': (\d+)", props["test_default"]["vmfuzz"])
        assert m
        return m.group(1)

    assert steps(a) != steps(b)  # another seed, another campaign
    assert a["test_profile"]["profile"] == "default"
    assert b["test_profile"]["profile"] == "vmfuzz-ci"


def test_campaign_seed() -> None:
    assert campaign_seed(5, "7") == 5
    assert campaign_seed(None, "7") == 7
    assert campaign_seed(None, None) == 0
    assert campaign_seed(None, "abc") == campaign_seed(None, "abc") != campaign_seed(None, "abd")


def test_importing_vmfuzz_changes_no_hypothesis_setting() -> None:
    """With ``CI`` set Hypothesis loads its own ``ci`` profile: importing vmfuzz (and its
    strategies) leaves it exactly as it is, and registers no profile (it once replaced ``ci``
    with its own 40 examples, for every Hypothesis test in the process)."""
    show = (
        "from hypothesis import settings\n"
        "print(settings.get_current_profile_name(), repr(settings.default))\n"
        "for name in ('dev', 'soak', 'vmfuzz-dev'):\n"
        "    try:\n"
        "        settings.get_profile(name)\n"
        "        print('registered', name)\n"
        "    except Exception:\n"
        "        pass\n"
    )
    env = {**os.environ, "CI": "true"}

    def run(code: str) -> str:
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=TIMEOUT)
        assert p.returncode == 0, p.stderr
        return p.stdout

    alone = run(show)
    assert alone.startswith("ci settings(")
    with_vmfuzz = run("import sys, vmfuzz\n"
                      "assert 'hypothesis' not in sys.modules, 'import vmfuzz loads Hypothesis'\n"
                      "import vmfuzz.strategies, vmfuzz.campaign\n" + show)
    assert with_vmfuzz == alone


def test_profiles_are_private_settings() -> None:
    from hypothesis import settings
    from vmfuzz.strategies.profiles import PROFILES, profile, register_profiles

    assert PROFILES == ("dev", "ci", "soak")
    assert profile("dev").max_examples == 60 and profile("ci").derandomize
    before = settings.get_current_profile_name()
    register_profiles()
    assert settings.get_profile("vmfuzz-soak").max_examples == 10_000
    assert settings.get_current_profile_name() == before
    with pytest.raises(ValueError, match="unknown profile"):
        profile("vmfuzz-dev")


# ------------------------------------------------------------------ user checks
def _kernel() -> Kernel:
    sched = Scheduler(NonPreemptive(), lockdep=LockDep())
    k = Kernel(KernelConfig(), sched)
    install(k)
    return k


def _rss_ok(k: Kernel, mm_id: int) -> bool:
    mm = k.mms[mm_id]
    return mm.rss == sum(isinstance(p, PresentPte) for p in mm.pgd.values())


def _bump_rss(k: Kernel, restore: bool) -> Any:
    """A path that breaks mm0's rss inside its page_table_lock section, and puts it back
    before the unlock (``restore``) or not."""
    mm = k.mms[0]
    yield k.sched.spin_lock(mm.page_table_lock)
    mm.rss += 1
    k.touch_mm(mm)
    yield "bump:inside"
    if restore:
        mm.rss -= 1
    k.sched.spin_unlock(mm.page_table_lock)
    yield "bump:unlocked"
    yield "bump:later"


def _deferring(answers: list[tuple[int, object]]) -> Callable[[vmfuzz.CheckView, int], object]:
    def hook(v: vmfuzz.CheckView, mm_id: int) -> object:
        if _rss_ok(v.k, mm_id):
            r: object = None
        elif v.atomic("mm", mm_id):
            r = vmfuzz.DEFER
        else:
            r = f"mm{mm_id}: rss {v.k.mms[mm_id].rss}"
        answers.append((v.step, r))
        return r

    return hook


def test_user_check_deferred_inside_the_section_then_holds(user_check: Any) -> None:
    answers: list[tuple[int, object]] = []
    user_check("test_rss_deferred", mm=_deferring(answers))
    k = _kernel()
    k.sched.spawn(_bump_rss(k, restore=True), "T0")
    out = k.sched.run_to_outcome()
    assert out.kind == "clean", out
    assert [r for _, r in answers] == [vmfuzz.DEFER, None]  # re-checked until it held


def test_user_check_deferred_fires_when_the_excuse_ends(user_check: Any) -> None:
    """The mm is not touched again after the unlock: the pending key is re-checked anyway,
    and the violation fires at the first step outside the section."""
    answers: list[tuple[int, object]] = []
    user_check("test_rss_deferred", mm=_deferring(answers))
    k = _kernel()
    k.sched.spawn(_bump_rss(k, restore=False), "T0")
    out = k.sched.run_to_outcome()
    assert out.kind == "violation" and out.violation is not None
    assert out.violation.check == "test_rss_deferred"
    assert out.violation.message == "mm0: rss 1"
    assert out.violation.label == "bump:unlocked"
    assert [r for _, r in answers] == [vmfuzz.DEFER, "mm0: rss 1"]


def test_user_each_step_runs_after_steps_that_touch_nothing(user_check: Any) -> None:
    steps: list[int] = []
    user_check("test_every_step", each_step=lambda v: steps.append(v.step))

    def idle() -> Any:
        for i in range(5):
            yield f"idle:{i}"

    k = _kernel()
    k.sched.spawn(idle(), "T0")
    assert k.sched.run_to_outcome().kind == "clean"
    assert steps == list(range(1, 7))  # five yields and the exit


def _one_step() -> Any:
    yield "one:step"


def test_user_check_answers(user_check: Any) -> None:
    """A Violation of another name is reported under the check's; anything but None, DEFER,
    a message or a Violation is a TypeError naming the check."""
    user_check("test_renamed", each_step=lambda v: vmfuzz.Violation("other", "broken", pfn=3))
    k = _kernel()
    k.sched.spawn(_one_step(), "T0")
    out = k.sched.run_to_outcome()
    assert out.violation is not None
    assert (out.violation.check, out.violation.message) == ("test_renamed", "broken")
    assert out.violation.objects == {"pfn": 3}
    unregister_user("test_renamed")

    user_check("test_bad_answer", each_step=lambda v: 42)
    k = _kernel()
    k.sched.spawn(_one_step(), "T0")
    with pytest.raises(TypeError, match="check test_bad_answer: a hook returned 42"):
        k.sched.run_to_outcome()


def test_check_names_are_unique(user_check: Any) -> None:
    def one(v: vmfuzz.CheckView) -> None:
        return None

    def two(v: vmfuzz.CheckView) -> None:
        return None

    c = user_check("test_unique", each_step=one)
    assert CHECKS["test_unique"] is c and c.family == "user"
    with pytest.raises(ValueError, match="'test_unique' is already registered"):
        vmfuzz.check("test_unique", doc="another", mirrors="x", each_step=two)
    with pytest.raises(ValueError, match="'use_after_free' is already registered"):
        vmfuzz.check("use_after_free", doc="mine", mirrors="x", each_step=two)
    # The same definition again (one file imported twice: by pytest, then as a plugin).
    assert vmfuzz.check("test_unique", doc="test check test_unique", mirrors="x",
                        each_step=one) is c
    with pytest.raises(ValueError, match="lower-case"):
        vmfuzz.check("Test-Unique", doc="d", mirrors="x", each_step=one)
    with pytest.raises(ValueError, match="at least one hook"):
        vmfuzz.check("test_no_hook", doc="d", mirrors="x")


def test_same_module_imported_twice_registers_once(tmp_path: Path) -> None:
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "import vmfuzz\n"
        "def quiet(v):\n"
        "    return None\n"
        "vmfuzz.check('test_twice', doc='holds', mirrors='x', each_step=quiet)\n",
        encoding="utf-8",
    )
    code = compile(plugin.read_text(encoding="utf-8"), str(plugin), "exec")
    try:
        exec(code, {"__name__": "plug_as_test"})
        exec(code, {"__name__": "vmfuzz_plugin_plug"})
        assert CHECKS["test_twice"].user
    finally:
        unregister_user("test_twice")


# ------------------------------------------------------------------ campaigns
def test_campaign_checks_must_be_registered() -> None:
    with pytest.raises(ValueError, match=r"unknown check.*test_nowhere.*vmfuzz\.check"):
        fuzz(KernelConfig(), max_examples=1, budget=None, checks=["test_nowhere"])


def test_campaign_runs_user_checks(user_check: Any) -> None:
    calls: list[int] = []
    user_check("test_counts", each_step=lambda v: calls.append(v.step))
    r = fuzz(KernelConfig(), max_examples=3, budget=None, mutants=0,
             checks=["test_counts", "use_after_free"])
    assert not r.found and r.checks == ("test_counts",)
    assert len(calls) >= r.steps > 0


def test_step_budget_stops_the_campaign_deterministically() -> None:
    """Checked before each example: the campaign stops at the first example past the budget,
    and skips the pool round after it."""
    def run(step_budget: int) -> tuple[int, int, int]:
        r = fuzz(KernelConfig(), seed_value=1, budget=None, step_budget=step_budget)
        assert r.stats is not None and not r.found
        return r.examples, r.steps, r.stats.mutant_runs

    one = run(1)  # the first examples that ran a step (the first may run none), no pool
    assert one[0] <= 5 and one[1] >= 1 and one[2] == 0
    first = run(3000)
    assert first[1] >= 3000 and first[0] < 100 and first[2] == 0
    assert run(3000) == first
    fewer = run(1000)
    assert fewer[0] < first[0] and fewer[1] < first[1]


def test_public_names() -> None:
    for name in vmfuzz.__all__:
        assert getattr(vmfuzz, name) is not None
    assert vmfuzz.KernelConfig is KernelConfig and vmfuzz.fuzz is fuzz
    assert vmfuzz.CheckView.DEFER is vmfuzz.DEFER
