"""Plugins (vmfuzz.plugins): a file outside the package adds a bug switch at a kernel function of
its choice and a per-step check; ``vmfuzz fuzz --plugin`` finds the bug, and the saved case
records the plugin, so ``vmfuzz show``, ``vmfuzz replay`` and pytest replay it with no flags.
A missing, changed or broken plugin is one line and exit status 2; a case that uses none of a
plugin's names does not record it; with the switch off the kernel runs as without the plugin.

The fuzzing runs are subprocesses (``python -m vmfuzz``); in-process tests unload every plugin
they load, so later test modules see only the real kernel.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmfuzz import plugins
from vmfuzz.case import Case, OpCall, Schedule, TaskSpec
from vmfuzz.kernel import BUGS, OPS, Kernel, KernelConfig
from vmfuzz.kernel.boot import BUILTIN_FEATURES, FEATURES, WORLD_FEATURES
from vmfuzz.kernel.mm_types import PresentPte
from vmfuzz.plugins import PluginError, load_plugins, refs_for

ROOT = Path(__file__).resolve().parent.parent
BUG = "anon_rss_before_recheck"

# A made-up old kernel: do_anonymous_page counts the page in rss before it takes the pte lock
# and rechecks pte_none (the recheck itself is kept), so a fault that loses the race to map the
# page leaves rss one too high; and the rss check of the kernel's check_mm() that sees it.
PLUGIN = '''
"""rss counted before do_anonymous_page's pte_none recheck, and check_mm()'s rss check."""

from vmfuzz.invariants._registry import DEFER, register
from vmfuzz.kernel.memory import ENOMEM
from vmfuzz.kernel.mm_types import VM_WRITE, PresentPte
from vmfuzz.kernel.page_alloc import alloc_page, lru_cache_add_active_or_unevictable, put_page
from vmfuzz.kernel.rmap import anon_vma_prepare, page_add_new_anon_rmap
from vmfuzz.plugins import switch
from vmfuzz.violation import Violation


def rss_counter(m, mm_id):
    """A live mm's rss counts its present ptes, once no fault or munmap holds its mmap_sem."""
    mm = m.k.mms.get(mm_id)
    if mm is None or mm.dead or mm.users == 0:
        return None
    present = sum(isinstance(p, PresentPte) for p in mm.pgd.values())
    if mm.rss == present:
        return None
    if mm.mmap_sem.holders():
        return DEFER
    return Violation("rss_counter", f"{mm.name} rss is {mm.rss}, but it has {present} ptes")


register("rss_counter", "integrity", "each mm's rss counts its present ptes",
         "kernel/fork.c check_mm(): 'BUG: Bad rss-counter state'", mm=rss_counter)


@switch("vmfuzz.kernel.memory.do_anonymous_page", bug="anon_rss_before_recheck",
        summary="do_anonymous_page counts the new page in rss before the pte lock and the "
                "pte_none recheck: a racing fault that maps the page first leaves rss high",
        invariant="rss_counter")
def do_anonymous_page(k, mm, vma, addr, write):
    """do_anonymous_page() with rss counted before the pte lock."""
    yield from anon_vma_prepare(k, vma)
    page = yield from alloc_page(k)
    if page is None:
        return ENOMEM
    mm.rss += 1
    k.touch_mm(mm)
    yield k.sched.spin_lock(mm.page_table_lock)
    if addr in mm.pgd:
        k.sched.spin_unlock(mm.page_table_lock)
        put_page(k, page)
        return 0
    page_add_new_anon_rmap(k, page, vma, addr)
    lru_cache_add_active_or_unevictable(k, page, vma)
    k.set_pte_at(mm, addr, PresentPte(page.pfn, bool(vma.vm_flags & VM_WRITE)))
    k.sched.spin_unlock(mm.page_table_lock)
    return 0
'''

# A plugin with one of each kind of name, for the in-process tests of what a case records.
SMALL = '''
from vmfuzz.invariants._registry import register
from vmfuzz.kernel.boot import world_feature
from vmfuzz.kernel.bugs import register as register_bug
from vmfuzz.kernel.ops import operation


@operation("plug_touch", mm="mm", addr="addr")
def plug_touch(k, mm, addr):
    """a load by a plugin's operation"""
    from vmfuzz.kernel.memory import user_access

    yield from user_access(k, mm, addr, False)


register_bug("plug_bug", "tests/test_plugins.py", "tested inside plug_touch", "plug_check")
register("plug_check", "integrity", "never fails", "nothing", each_step=lambda m: None)


@world_feature("plug_high")
def plug_high(boot):
    """the last boot page of each initial process written"""
    for mm in boot.initial:
        boot.op("write", mm=mm, addr=boot.pages - 1)
        boot.target(mm, boot.pages - 1)
'''


def vmfuzz(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python -m vmfuzz ARGS`` in a fresh process, in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "vmfuzz", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def pytest_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh process in ``cwd`` (its corpus/ collected by the vmfuzz plugin)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def one_line(stderr: str) -> str:
    """The one line a bad input gives on stderr (and never a traceback)."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def clean_plugins() -> Iterator[None]:
    """Unload every plugin a test loads in this process."""
    before = set(plugins.LOADED)
    yield
    for key, p in list(plugins.LOADED.items()):
        if key not in before:
            plugins.unload(p)


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """``vmfuzz fuzz --plugin ./p.py --bug anon_rss_before_recheck`` run once: (its folder,
    the saved case, its --json output)."""
    work = tmp_path_factory.mktemp("found")
    (work / "p.py").write_text(PLUGIN)
    res = vmfuzz(work, "fuzz", "--plugin", "./p.py", "--bug", BUG, "--seed", "0",
                 "--max-examples", "100", "--corpus", "corpus", "--json")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["found"] and out["invariant"] == "rss_counter", out
    case = work / out["case"]
    assert case.parent == work / "corpus"
    return work, case, out


def copy_of(found: tuple[Path, Path, dict[str, Any]], to: Path) -> tuple[Path, Path]:
    """A copy of the found case's folder (plugin and corpus): (folder, case)."""
    work, case, _ = found
    shutil.copytree(work, to / "w")
    return to / "w", to / "w" / case.relative_to(work)


# ======================================================================= found and replayed
def test_the_saved_case_records_the_plugin_by_path_and_digest(
    found: tuple[Path, Path, dict[str, Any]],
) -> None:
    work, case, out = found
    data = json.loads(case.read_text())
    digest = hashlib.sha256((work / "p.py").read_bytes()).hexdigest()
    assert data["plugins"] == [{"name": "../p.py", "sha256": digest}]
    assert data["config"]["bugs"] == [BUG] and data["expected"] == "rss_counter"
    assert out["shrunk"]["tasks"] == 2 and out["shrunk"]["preemptions"] == 1  # a race


def test_show_and_replay_load_the_plugin_by_themselves(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, case, _ = found
    shown = vmfuzz(tmp_path, "show", str(case), "--width", "100")  # from another folder
    assert shown.returncode == 0, shown.stderr
    assert "do_anonymous_page:spin_lock(page_table_lock)" in shown.stdout
    assert "*** rss_counter at step" in shown.stdout
    replayed = vmfuzz(tmp_path, "replay", str(case))
    assert replayed.returncode == 0, replayed.stderr
    assert "rss_counter as recorded; fix holds on this schedule" in replayed.stdout


def test_pytest_replays_the_case_with_no_option(found: tuple[Path, Path, dict[str, Any]]) -> None:
    work, _, _ = found
    res = pytest_run(work, "corpus")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


def test_a_case_loaded_in_process_loads_its_plugin(
    found: tuple[Path, Path, dict[str, Any]], clean_plugins: None
) -> None:
    from vmfuzz.corpus import load, replay

    _, case, _ = found
    assert BUG not in BUGS
    result = replay(load(case))
    assert result.ok and result.trace_matches
    assert result.fix is not None and result.fix.status == "holds"
    assert BUG in BUGS


# ======================================================================= missing or changed
def test_a_changed_plugin_is_one_line_and_exit_2(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    work, case = copy_of(found, tmp_path)
    with (work / "p.py").open("a") as f:
        f.write("# edited\n")
    for command in ("replay", "show"):
        res = vmfuzz(work, command, str(case))
        assert res.returncode == 2, (command, res.stdout, res.stderr)
        line = one_line(res.stderr)
        assert line.startswith(f"vmfuzz {command}: {case}: plugins: plugin ../p.py has changed "
                               "since the case was saved"), line
    res = pytest_run(work, "corpus")
    assert res.returncode == 1 and "1 failed" in res.stdout
    assert "plugin ../p.py has changed since the case was saved" in res.stdout


def test_a_missing_plugin_is_one_line_and_exit_2(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    work, case = copy_of(found, tmp_path)
    (work / "p.py").unlink()
    res = vmfuzz(work, "replay", str(case))
    assert res.returncode == 2
    assert "plugins: plugin ../p.py is missing: no file" in one_line(res.stderr)
    res = pytest_run(work, "corpus")
    assert res.returncode == 1 and "plugin ../p.py is missing" in res.stdout


def test_a_plugin_given_by_hand_serves_a_case_moved_away_from_it(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    work, case = copy_of(found, tmp_path)
    moved = work / "deeper" / "still" / case.name
    moved.parent.mkdir(parents=True)
    case.rename(moved)
    assert vmfuzz(work, "replay", str(moved)).returncode == 2  # ../p.py is not there
    res = vmfuzz(work, "replay", str(moved), "--plugin", "p.py")
    assert res.returncode == 0, res.stderr


def test_pytest_options_load_plugins_for_a_case_that_records_none(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A case saved before cases recorded plugins: --vmfuzz-plugin or vmfuzz_plugins."""
    work, case = copy_of(found, tmp_path)
    data = json.loads(case.read_text())
    del data["plugins"]
    case.write_text(json.dumps(data))
    res = pytest_run(work, "corpus")
    assert res.returncode == 1 and "unknown bug switch 'anon_rss_before_recheck'" in res.stdout
    assert pytest_run(work, "corpus", "--vmfuzz-plugin", "p.py").returncode == 0
    (work / "pytest.ini").write_text("[pytest]\nvmfuzz_plugins =\n    p.py\n")
    res = pytest_run(work, "corpus")
    assert res.returncode == 0, res.stdout
    res = pytest_run(work, "corpus", "--vmfuzz-plugin", "gone.py")
    assert res.returncode == 1 and "gone.py: no such file" in res.stdout


# ======================================================================= bad plugins
@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("fuzz", ["--max-examples", "1"]), ("zoo", ["--seeds", "0"]), ("replay", ["x.json"]),
        ("show", ["x.json"]), ("bench", ["--quick"]), ("soak", ["--duration", "1s"]),
        ("bugs", []), ("invariants", []), ("report", ["state"]),
    ],
)
def test_every_command_loads_plugins_before_it_runs(
    command: str, args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmfuzz.cli import main

    assert main([command, *args, "--plugin", str(tmp_path / "none.py")]) == 2
    err = capsys.readouterr().err
    assert one_line(err) == f"vmfuzz {command}: error: plugin {tmp_path / 'none.py'}: no such file"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("raise RuntimeError('boom')\n", "RuntimeError: boom"),
        ("def f(:\n", "SyntaxError: invalid syntax"),
        ("import sys\nsys.exit(3)\n", "exits while being imported"),
        ("from vmfuzz.kernel.ops import operation\n"
         "@operation('plug_fine')\ndef a(k):\n    yield 'a'\n"
         "@operation('mmap')\ndef b(k):\n    yield 'b'\n",
         "registers operation 'mmap', which vmfuzz already registers"),
        ("from vmfuzz.kernel.bugs import register\n"
         "register('detach_vmas_outside_ptl', 's', 'x', 'y')\n",
         "registers bug 'detach_vmas_outside_ptl', which vmfuzz already registers"),
        ("from vmfuzz.invariants._registry import register\n"
         "register('data_integrity', 'integrity', 'x', 'y', each_step=lambda m: None)\n",
         "registers check 'data_integrity', which vmfuzz already registers"),
        ("from vmfuzz.plugins import switch\n"
         "@switch('vmfuzz.kernel.memory.do_anonymous_page', bug='b', summary='s', "
         "invariant='i')\ndef f(k, mm):\n    yield 'x'\n",
         "switch vmfuzz.kernel.memory.do_anonymous_page: the alternative takes (k, mm), the "
         "original takes (k, mm, vma, addr, write)"),
        ("from vmfuzz.plugins import switch\n"
         "@switch('vmfuzz.kernel.page_alloc.put_page', bug='b', summary='s', invariant='i')\n"
         "def f(k, page):\n    yield 'x'\n",
         "the original is a plain function, the alternative is a generator function"),
        ("from vmfuzz.plugins import switch\n"
         "@switch('vmfuzz.campaign.fuzz', bug='b', summary='s', invariant='i')\n"
         "def f(config):\n    pass\n",
         "the site must be a function of the kernel model"),
    ],
)
def test_a_bad_plugin_is_one_line_and_leaves_nothing_registered(
    source: str, problem: str, tmp_path: Path, clean_plugins: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vmfuzz.cli import main
    from vmfuzz.kernel import memory

    original = memory.do_anonymous_page
    path = tmp_path / "bad.py"
    path.write_text(source)
    assert main(["bugs", "--plugin", str(path)]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"vmfuzz bugs: error: plugin {path}: ") and problem in line, line
    assert "plug_fine" not in OPS and "b" not in BUGS
    assert memory.do_anonymous_page is original


def test_a_name_another_plugin_registered_names_that_plugin(
    tmp_path: Path, clean_plugins: None
) -> None:
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    first.write_text(SMALL)
    second.write_text("from vmfuzz.kernel.bugs import register\n"
                      "register('plug_bug', 's', 'x', 'y')\n")
    load_plugins([str(first)])
    with pytest.raises(PluginError) as e:
        load_plugins([str(second)])
    assert str(e.value) == (f"plugin {second}: registers bug 'plug_bug', which plugin "
                            f"{first} already registers")


# ======================================================================= what a case records
def test_a_case_records_only_the_plugins_whose_names_it_uses(
    tmp_path: Path, clean_plugins: None
) -> None:
    path = tmp_path / "plug" / "small.py"
    path.parent.mkdir()
    path.write_text(SMALL)
    (p,) = load_plugins([str(path)])
    assert p.registered == {"operation": {"plug_touch"}, "bug": {"plug_bug"},
                            "check": {"plug_check"}, "world feature": {"plug_high"}}
    ref = plugins.PluginRef("../plug/small.py", hashlib.sha256(SMALL.encode()).hexdigest())
    task = TaskSpec("T", (OpCall("read", {"mm": 0, "addr": 0}),))
    plain = Case(KernelConfig(), (task,), Schedule("none"))
    corpus = tmp_path / "corpus"
    assert refs_for(plain, "data_integrity", corpus) == ()
    uses_op = Case(KernelConfig(), (TaskSpec("T", (OpCall("plug_touch", {"mm": 0, "addr": 0}),)),),
                   Schedule("none"))
    assert refs_for(uses_op, "clean", corpus) == (ref,)
    assert refs_for(Case(KernelConfig(bugs={"plug_bug"}), (task,), Schedule("none")), "clean",
                    corpus) == (ref,)
    assert refs_for(Case(KernelConfig(world={"plug_high"}), (task,), Schedule("none")), "clean",
                    corpus) == (ref,)
    assert refs_for(plain, "plug_check", corpus) == (ref,)


def test_a_fuzzed_case_that_uses_no_plugin_name_records_none(
    found: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    work, _ = copy_of(found, tmp_path)
    res = vmfuzz(work, "fuzz", "--plugin", "./p.py", "--bug", "detach_vmas_outside_ptl",
                 "--seed", "0", "--max-examples", "100", "--corpus", "other", "--json")
    assert res.returncode == 1, res.stderr
    out = json.loads(res.stdout)
    assert out["invariant"] == "lock_not_held"
    assert "plugins" not in json.loads((work / out["case"]).read_text())


# ======================================================================= switches and features
def test_with_the_switch_off_the_kernel_runs_as_without_the_plugin(
    tmp_path: Path, clean_plugins: None
) -> None:
    """Every corpus case replays to the same trace with the dispatcher installed."""
    from vmfuzz.corpus import case_files, load, replay
    from vmfuzz.kernel import memory

    files, _ = case_files([ROOT / "corpus"])
    assert files

    def traces() -> list[str | None]:
        return [replay(load(f)).trace_sha256 for f in files]

    before = traces()
    original = memory.do_anonymous_page
    path = tmp_path / "p.py"
    path.write_text(PLUGIN)
    (p,) = load_plugins([str(path)])
    assert memory.do_anonymous_page is not original
    assert memory.do_anonymous_page.__wrapped__ is original  # type: ignore[attr-defined]
    assert traces() == before
    plugins.unload(p)
    assert memory.do_anonymous_page is original and BUG not in BUGS


def test_a_switch_reaches_every_binding_and_the_operation_table(
    tmp_path: Path, clean_plugins: None
) -> None:
    import vmfuzz.kernel.memory as memory
    import vmfuzz.kernel.page_alloc as page_alloc

    original_put, original_read = page_alloc.put_page, memory.sys_read
    bound = [m for n, m in sorted(sys.modules.items())
             if n.startswith("vmfuzz.kernel.") and getattr(m, "put_page", None) is original_put]
    assert len(bound) > 2  # imported by name into several kernel modules
    path = tmp_path / "sw.py"
    path.write_text(
        "from vmfuzz.plugins import switch\n"
        "@switch('vmfuzz.kernel.page_alloc.put_page', bug='plug_put', summary='s', "
        "invariant='bad_page')\n"
        "def put_page(k, page):\n    page.count -= 1\n"
        "@switch('vmfuzz.kernel.memory.sys_read', bug='plug_read', summary='s', "
        "invariant='data_integrity')\n"
        "def sys_read(k, mm, addr):\n    yield 'sys_read:plugin'\n"
    )
    (p,) = load_plugins([str(path)])
    assert all(m.put_page is not original_put for m in bound)
    assert OPS["read"].fn is memory.sys_read is not original_read
    k = Kernel(KernelConfig(bugs={"plug_read"}))
    gen = OPS["read"].fn(k, 0, 0)
    assert next(gen) == "sys_read:plugin"
    plain = Kernel(KernelConfig())
    assert next(OPS["read"].fn(plain, 0, 0)) != "sys_read:plugin"
    plugins.unload(p)
    assert all(m.put_page is original_put for m in bound)
    assert OPS["read"].fn is original_read


def test_a_plugin_world_feature_is_built_after_the_built_in_ones(
    tmp_path: Path, clean_plugins: None
) -> None:
    assert tuple(WORLD_FEATURES) == BUILTIN_FEATURES == (
        "swap_sync", "swapped", "resident", "forked", "split", "shortage")
    path = tmp_path / "small.py"
    path.write_text(SMALL)
    (p,) = load_plugins([str(path)])
    assert tuple(WORLD_FEATURES) == (*BUILTIN_FEATURES, "plug_high")
    assert "plug_high" in WORLD_FEATURES and FEATURES["plug_high"].doc.startswith("the last")
    k = Kernel(KernelConfig(world={"plug_high", "resident"}))
    last = k.config.boot_pages - 1
    for mm in range(k.config.nr_mms):
        assert isinstance(k.mms[mm].pgd.get(last), PresentPte)
    assert k.boot_targets[-3:] == [(0, last), (1, last), (2, last)]  # after resident's
    plugins.unload(p)
    assert tuple(WORLD_FEATURES) == BUILTIN_FEATURES
    with pytest.raises(ValueError, match="unknown world feature"):
        KernelConfig(world={"plug_high"})


def test_an_installed_plugin_loads_only_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_plugins: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    dist = tmp_path / "plugdist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugdist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[vmfuzz.plugins]\nplugsmall = plugsmall_mod\n")
    (tmp_path / "plugsmall_mod.py").write_text(SMALL)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugsmall" in plugins.installed()
    from vmfuzz.cli import main

    assert main(["bugs", "--json"]) == 0
    assert "plug_bug" not in BUGS  # installed is not loaded
    (p,) = load_plugins(["plugsmall"])
    assert p.kind == "entry point" and p.module == "plugsmall_mod" and "plug_bug" in BUGS
    assert p.sha256 == hashlib.sha256(SMALL.encode()).hexdigest()
    assert p.ref(tmp_path) == plugins.PluginRef("plugsmall", p.sha256)


# ============================================================ a finding's plugin is the patch
PATCH = '''\
"""A patch under test: counter++ as load/store (FIXED takes mmlist_lock around it)."""
from vmfuzz import Violation
from vmfuzz.invariants._registry import register
from vmfuzz.kernel.ops import operation

FIXED = False

register("patch_lost_update", "engine", "patch counter lost an update", "test: BUG_ON")


@operation("patch_incr")
def patch_incr(k):
    if FIXED:
        yield k.sched.spin_lock(k.mmlist_lock)
    v = k.stats.get("patch_counter", 0)
    yield "patch_incr:after_read"
    k.stats["patch_counter"] = v + 1
    k.count("patch_incs")
    if k.stats["patch_counter"] != k.stats["patch_incs"]:
        raise Violation("patch_lost_update", "an increment was lost")
    if FIXED:
        k.sched.spin_unlock(k.mmlist_lock)
'''

SAVE = '''\
import sys
from vmfuzz.case import Case, OpCall, TaskSpec, execute
from vmfuzz.corpus import save_failure
from vmfuzz.kernel import KernelConfig
from vmfuzz.plugins import load_plugins
from vmfuzz.schedules import Explicit
load_plugins([sys.argv[1]])
case = Case(KernelConfig(), (TaskSpec("T1", (OpCall("patch_incr"),)),
                             TaskSpec("T2", (OpCall("patch_incr"),))))
run = execute(case, Explicit(("run T1 until patch_incr:after_read", "run T2 until exit",
                              "run T1 to completion")))
print(save_failure(case, run, sys.argv[2]))
'''


def test_a_finding_in_a_plugin_patch_turns_green_when_the_patch_is_fixed(tmp_path: Path) -> None:
    """The plugin is the code under test: fixing it changes its digest, and a finding (expected
    clean) replays with the plugin as it is now, saying so, instead of refusing."""
    plugin = tmp_path / "patch.py"
    plugin.write_text(PATCH)
    res = subprocess.run([sys.executable, "-c", SAVE, str(plugin), str(tmp_path / "corpus")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    case = Path(res.stdout.strip())
    data = json.loads(case.read_text())
    assert data["expected"] == "clean" and data["found"]["check"] == "patch_lost_update"
    assert [p["name"] for p in data["plugins"]] == ["../patch.py"]
    res = vmfuzz(tmp_path, "replay", str(case))
    assert res.returncode == 1 and "still fails (check patch_lost_update" in res.stdout
    plugin.write_text(PATCH.replace("FIXED = False", "FIXED = True"))
    res = vmfuzz(tmp_path, "replay", str(case))
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert "fixed: clean" in res.stdout and "plugin ../patch.py changed since" in res.stdout
