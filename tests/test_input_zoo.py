"""The bad-input zoo: malformed, oversized and non-regular case files fed to every reader.

``build_zoo`` writes one entry per kind of bad input (sizes over the caps of
``vmfuzz._limits``, integers of thousands of digits, a FIFO and a ``/dev/zero`` symlink named
like a case, ``*.JSON``, dangling symlinks, lone surrogates, 3,000 tasks ...) next to two good
cases.  Every bad entry must get exactly one line and exit status 2 from ``vmfuzz replay`` and
``vmfuzz show``, fail as one pytest item with one line, and never take more than 5 s or 1 GB;
the good cases beside them must still replay.

The default run feeds the whole zoo through one driver process (this file, run as a script,
under ``resource.setrlimit``): every file through ``replay`` and ``show`` in that process with
a 5 s alarm each, the folder through one ``replay`` and one in-process pytest session.  The
``badinput`` marker runs every file through every reader in a process of its own.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
GOOD = [ROOT / "corpus" / "examples" / "seed001_readahead_vs_try_to_swap_out.json",
        ROOT / "corpus" / "bugs" / "swapin_no_swapcache_recheck.json"]
SECONDS = 5.0
# Valid cases under a name a folder walk reports: named on their own they are read as cases.
FOLDER_ONLY = {"UPPER.JSON", "Mixed.Json"}
MEMORY = 1 << 30  # bytes of address space of every process that reads the zoo


def _case(**over: Any) -> dict[str, Any]:
    """A small valid case, with top-level fields replaced by ``over``."""
    d: dict[str, Any] = {
        "format": "vmfuzz-case", "version": 1, "config": {},
        "tasks": [{"name": "T1", "ops": [{"op": "read", "args": {"mm": 0, "addr": 0}}]}],
        "expected": "clean",
    }
    d.update(over)
    return d


def _config(**over: Any) -> dict[str, Any]:
    return _case(config=over)


def _task(name: str = "T1", **over: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"name": name, "ops": [{"op": "read", "args": {"mm": 0, "addr": 0}}]}
    t.update(over)
    return t


def _json_cases() -> dict[str, str]:
    """Kind -> the text of a file of that kind (all of them valid JSON or nearly)."""
    many_ops = [{"op": "kswapd", "args": {"count": 1}}] * 10_001
    cases: dict[str, Any] = {
        "boot_pages_over_pages_per_mm": _config(pages_per_mm=4, boot_pages=8),
        "boot_pages_over_default_pages": _config(boot_pages=17),
        "nr_frames_huge": _config(nr_frames=10**12),
        "nr_mms_huge": _config(nr_mms=10**7),
        "pages_per_mm_huge": _config(pages_per_mm=10**9, boot_pages=10**9),
        "nr_swap_huge": _config(nr_swap=10**9),
        "nr_mms_zero": _config(nr_mms=0),
        "nr_mms_negative": _config(nr_mms=-3),
        "nr_mms_float": _config(nr_mms=3.0),
        "config_unknown_world": _config(world=["teleport"]),
        "tasks_3000": _case(tasks=[_task(f"T{i}") for i in range(3000)]),
        "tasks_none": _case(tasks=[]),
        "ops_per_task_over_cap": _case(tasks=[_task(ops=many_ops)]),
        "task_name_lone_surrogate": _case(tasks=[_task("T\ud800")]),
        "task_name_control_char": _case(tasks=[_task("T\x1b[2J")]),
        "task_name_too_long": _case(tasks=[_task("T" * 5000)]),
        "task_start_huge": _case(tasks=[_task(start=10**15)]),
        "op_arg_huge": _case(tasks=[_task(ops=[{"op": "read",
                                                "args": {"mm": 0, "addr": 10**40}}])]),
        "op_count_huge": _case(tasks=[_task(ops=[{"op": "kswapd",
                                                  "args": {"count": 2**64}}])]),
        "op_unknown": _case(tasks=[_task(ops=[{"op": "munmapp"}])]),
        "max_steps_huge": _case(max_steps=10**12),
        "max_steps_zero": _case(max_steps=0),
        "pct_depth_huge": _case(schedule={"pct": {"seed": 1, "depth": 10**9, "k": 200}}),
        "pct_k_huge": _case(schedule={"pct": {"seed": 1, "depth": 3, "k": 10**12}}),
        "random_seed_huge": _case(schedule={"random": {"seed": 10**30}}),
        "decisions_over_cap": _case(schedule={"decisions": [0] * 100_001}),
        "preemptions_gap_huge": _case(schedule={"preemptions": [[10**12, 0]]}),
        "preemptions_over_cap": _case(schedule={"preemptions": [[0, 0]] * 100_001}),
        "explicit_step_too_long": _case(schedule={"explicit": ["run T1 until " + "x" * 5000]}),
        "explicit_unknown_task": _case(schedule={"explicit": ["run T9 until exit"]}),
        "two_schedule_forms": _case(schedule={"decisions": [], "random": {"seed": 1}}),
        "description_lone_surrogate": _case(description="\udc80 oops"),
        "metadata_key_lone_surrogate": _case(metadata={"\ud83d": 1}),
        "expected_long_unknown": _case(expected="x" * 100_000),
        "found_with_expected_check": _case(expected="swap_cache_unique",
                                           found={"check": "swap_cache_unique"}),
        "version_newer": _case(version=2),
        "format_other": _case(format="something-else"),
        "unknown_top_field": _case(expectd="clean"),
        "plugin_missing": _case(plugins=[{"name": "../nowhere.py", "sha256": "0" * 64}]),
        "top_level_list": [1, 2, 3],
    }
    out = {k: json.dumps(v) for k, v in cases.items()}
    big = json.dumps(_config(nr_frames=12))
    digits = "9" * 5000  # over Python's limit of 4,300 digits for int <-> str
    out["int_5000_digits_in_config"] = big.replace('"nr_frames": 12', f'"nr_frames": {digits}')
    out["int_5000_digits_in_metadata"] = json.dumps(_case(metadata={"seed": 0})).replace(
        '"seed": 0', f'"seed": -{digits}')
    out["float_overflow"] = json.dumps(_config(nr_frames=12)).replace(
        '"nr_frames": 12', '"nr_frames": 1e999999')
    out["nan_literal"] = json.dumps(_config(nr_frames=12)).replace('"nr_frames": 12',
                                                                   '"nr_frames": NaN')
    out["nested_too_deeply"] = "[" * 200_000 + "]" * 200_000
    out["truncated"] = json.dumps(_case())[:-7]
    out["duplicate_field"] = json.dumps(_case())[:-1] + ', "expected": "clean"}'
    out["empty"] = ""
    out["whitespace_only"] = "  \n\t\n"
    out["not_json_text"] = "This folder holds the cases of the swap tests.\n"
    return out


def build_zoo(folder: Path) -> dict[str, str]:
    """Write the zoo into ``folder`` (created): file name -> kind.  Also copies the good cases
    (``good-*.json``, not in the result)."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, str] = {}
    for kind, text in _json_cases().items():
        name = f"{kind}.json"
        (folder / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        kinds[name] = kind
    raw = {
        "not_utf8": b'{"format": "vmfuzz-case", "description": "\xff\xfe"}',
        "bom_only": b"\xef\xbb\xbf",
        "binary": bytes(range(256)) * 4,
    }
    for kind, data in raw.items():
        (folder / f"{kind}.json").write_bytes(data)
        kinds[f"{kind}.json"] = kind
    # Over the size cap without using the disk: a sparse file of 4 GB.
    with open(folder / "file_4gb_sparse.json", "wb") as f:
        f.truncate(4 << 30)
    kinds["file_4gb_sparse.json"] = "file_4gb_sparse"
    (folder / "file_just_over_cap.json").write_text(
        json.dumps(_case(description="x" * (1 << 20))), encoding="utf-8")
    kinds["file_just_over_cap.json"] = "file_just_over_cap"
    os.mkfifo(folder / "fifo.json")
    kinds["fifo.json"] = "fifo"
    os.symlink("/dev/zero", folder / "dev_zero.json")
    kinds["dev_zero.json"] = "dev_zero_symlink"
    os.symlink("/dev/null", folder / "dev_null.json")
    kinds["dev_null.json"] = "dev_null_symlink"
    os.symlink(folder / "gone.json.tmp", folder / "dangling.json")
    kinds["dangling.json"] = "dangling_symlink"
    os.symlink("loop_b.json", folder / "loop_a.json")
    os.symlink("loop_a.json", folder / "loop_b.json")
    kinds["loop_a.json"] = "symlink_loop"
    kinds["loop_b.json"] = "symlink_loop"
    (folder / "UPPER.JSON").write_text(json.dumps(_case()), encoding="utf-8")
    kinds["UPPER.JSON"] = "upper_case_suffix"
    (folder / "Mixed.Json").write_text(json.dumps(_case()), encoding="utf-8")
    kinds["Mixed.Json"] = "mixed_case_suffix"
    # A non-UTF-8 file name (os.fsdecode gives surrogates) holding a bad case.
    with open(os.path.join(os.fsencode(folder), b"name_\xff.json"), "wb") as f:
        f.write(b"{}")
    kinds[os.fsdecode(b"name_\xff.json")] = "non_utf8_file_name"
    for g in GOOD:
        shutil.copy(g, folder / f"good-{g.name}")
    return kinds


# ----------------------------------------------------------------- the driver (a subprocess)
def _limit() -> None:
    """In the child: at most 1 GB of address space."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


class _Late(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Late()


def _call(argv: list[str]) -> dict[str, Any]:
    """``vmfuzz ARGV`` in this process, under a 5 s alarm: rc, stdout and stderr lines, time."""
    from vmfuzz.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0, c0 = time.perf_counter(), time.process_time()
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, SECONDS)
    rc: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except _Late:
        rc = "timeout"
    except BaseException as e:  # a traceback is what the zoo must never see
        rc = f"raised {type(e).__name__}: {e}"[:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"rc": rc, "out": out.getvalue().splitlines(), "err": err.getvalue().splitlines(),
            "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


class _Reports:
    """A pytest plugin object that keeps every item's call report."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            self.items[report.nodeid] = {"outcome": report.outcome,
                                         "text": report.longreprtext, "wall": report.duration}


def drive(zoo: Path, files: list[str], out: Path) -> None:
    """Feed the zoo to replay, show and pytest in this process; write what each said."""
    result: dict[str, Any] = {"replay": {}, "show": {}}
    for name in files:
        p = str(zoo / name)
        result["replay"][name] = _call(["replay", p])
        result["show"][name] = _call(["show", p])
    result["folder"] = _call(["replay", str(zoo)])
    result["empty"] = _call(["replay", str(zoo.parent / "empty")])
    reports = _Reports()
    with contextlib.redirect_stdout(io.StringIO()):
        import pytest as _pytest

        result["pytest_rc"] = int(_pytest.main(
            [str(zoo), "-q", "-p", "no:cacheprovider", "--rootdir", str(zoo.parent),
             "-c", str(zoo.parent / "pytest.ini"), "--vmfuzz-corpus", str(zoo),
             "--vmfuzz-timeout", str(SECONDS)],
            plugins=[reports]))
    result["pytest"] = reports.items
    result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.write_text(json.dumps(result), encoding="utf-8")


def _zoo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    zoo = tmp_path / "zoo"
    kinds = build_zoo(zoo)
    (tmp_path / "empty").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    return zoo, kinds


def _one_line(lines: list[str], command: str, name: str) -> str | None:
    """None if ``lines`` is one line of ``vmfuzz COMMAND: <path to name>: ...``, else why not."""
    if len(lines) != 1:
        return f"{len(lines)} lines: {lines[:3]}"
    if not lines[0].startswith(f"vmfuzz {command}: ") or name not in lines[0]:
        return f"not a line naming the file: {lines[0][:200]}"
    return None


def test_every_bad_input_gets_one_line_and_exit_2_and_good_cases_still_replay(
    tmp_path: Path,
) -> None:
    zoo, kinds = _zoo(tmp_path)
    bad = sorted(kinds)
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([sys.executable, __file__, "drive", str(zoo), str(out), *bad],
                   check=True, timeout=600, preexec_fn=_limit, env=env, cwd=tmp_path)
    r = json.loads(out.read_text(encoding="utf-8"))
    problems = []
    for command in ("replay", "show"):
        for name in bad:
            got = r[command][name]
            if name in FOLDER_ONLY:
                if got["rc"] != 0:
                    problems.append(f"{command} {name} named on its own: exit {got['rc']}")
                continue
            if got["rc"] != 2:
                problems.append(f"{command} {name}: exit {got['rc']} {got['err'][:2]}")
                continue
            why = _one_line(got["err"], command, name)
            if why is not None:
                problems.append(f"{command} {name}: {why}")
            if got["wall"] > SECONDS:
                problems.append(f"{command} {name}: took {got['wall']:.1f} s")
    assert problems == []
    # The folder: one line per bad entry, the good cases replay, exit 2 (bad input wins).
    folder = r["folder"]
    assert folder["rc"] == 2
    named = {name for name in bad if any(f"{zoo / name}:" in line for line in folder["err"])}
    assert sorted(set(bad) - named) == [] and len(folder["err"]) == len(bad)
    ok = [line for line in folder["out"] if line.startswith("ok")]
    assert [line.split()[1] for line in ok] == sorted(f"{zoo}/good-{g.name}:" for g in GOOD)
    assert folder["out"][-1] == f"{len(bad) + len(GOOD)} cases: 2 ok, {len(bad)} unusable"
    # An empty folder is reported, not a silent success.
    assert r["empty"]["rc"] == 2 and len(r["empty"]["err"]) == 1
    assert "no case files" in r["empty"]["err"][0]
    # pytest: every bad entry is one failing item with one line; the good cases pass.
    items = r["pytest"]
    assert r["pytest_rc"] == 1
    passed = sorted(k for k, v in items.items() if v["outcome"] == "passed")
    assert [k.split("::")[0] for k in passed] == sorted(f"zoo/good-{g.name}" for g in GOOD)
    failed = {k.split("::")[0].removeprefix("zoo/"): v for k, v in items.items()
              if v["outcome"] == "failed"}
    assert sorted(failed) == sorted(bad)
    for name, v in failed.items():
        assert len(v["text"].splitlines()) == 1, (name, v["text"][:500])
        assert v["wall"] < SECONDS, name
    assert r["maxrss_kb"] * 1024 < MEMORY


def test_the_documented_limits_are_the_enforced_ones() -> None:
    from vmfuzz._limits import CAPS

    text = (ROOT / "docs" / "corpus.md").read_text(encoding="utf-8")
    section = text.split("\n## Limits\n", 1)[1]
    rows = [line.replace("\\|", "\x00").split("|")[1:3]
            for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    documented = [(a.strip().replace("\x00", "|"), b.strip().replace("\x00", "|"))
                  for a, b in rows[1:]]
    assert documented == list(CAPS)


_ABSURD = "9" * 400 + "d"
BAD_ARGUMENTS = [
    *[[cmd, "--budget", b] for cmd in ("fuzz", "zoo", "bench")
      for b in ("nan", "inf", "-5", "0", "1e3", "400d", _ABSURD)],
    *[["soak", "--duration", b, "--state", "unused"] for b in ("nan", "-1", _ABSURD)],
    ["soak", "--workers", "100000", "--duration", "1s", "--state", "unused"],
    ["fuzz", "--workers", "100000"],
    ["fuzz", "--max-examples", "1" + "0" * 30],
    ["fuzz", "--mutants", "1" + "0" * 12, "--max-examples", "1"],
    ["zoo", "-j", "100000"],
    ["zoo", "--max-examples", "1" + "0" * 30],
    ["zoo", "--seeds", "0-100000000000"],
    ["zoo", "--seeds", "0-" + "9" * 5000],
    ["bench", "--seeds", "100000000000"],
    ["bench", "--workers", "100000"],
    ["verify", "--limit", "1" + "0" * 21, "x.json"],
    ["show", "--width", "1000000000", "x.json"],
    ["replay", "--width", "5", "x.json"],
]


def test_absurd_numbers_on_the_command_line_are_refused_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vmfuzz._cmd_bench
    import vmfuzz._workers
    import vmfuzz.campaign
    import vmfuzz.soak
    import vmfuzz.verify
    from vmfuzz.cli import main

    def started(*args: Any, **kw: Any) -> None:
        raise AssertionError("work started on an argument that should have been refused")

    # A cap that went missing fails here at once instead of starting a run that never ends.
    for owner, name in ((vmfuzz.campaign, "fuzz"), (vmfuzz._workers, "fuzz_workers"),
                        (vmfuzz.soak, "run_soak"), (vmfuzz._cmd_bench, "bench_limits"),
                        (vmfuzz.verify, "verify"),
                        (subprocess, "Popen")):
        monkeypatch.setattr(owner, name, started)
    monkeypatch.chdir(tmp_path)
    for argv in BAD_ARGUMENTS:
        t0 = time.process_time()
        rc = main(argv)
        out, err = capsys.readouterr()
        assert (rc, out, len(err.splitlines())) == (2, "", 1), (argv[:3], out[:200], err[:300])
        assert err.startswith(f"vmfuzz {argv[0]}: error: ") and len(err) < 300, err
        assert time.process_time() - t0 < 1.0, argv[:3]
    assert not (tmp_path / "unused").exists()


# ------------------------------------------------ exhaustive: a process per file and reader
def _limit_child() -> None:
    """In a child of the exhaustive pass: 1 GB of address space and 5 s of CPU."""
    _limit()
    resource.setrlimit(resource.RLIMIT_CPU, (int(SECONDS), int(SECONDS) + 1))


@pytest.mark.badinput
def test_every_bad_input_in_a_process_of_its_own(tmp_path: Path) -> None:
    """Each file through each reader in a fresh process: at most 5 s of CPU (the kernel stops
    it past that) and 1 GB; 5 s of wall time for replay and show, 15 s for pytest, whose own
    start takes seconds on a loaded machine (a FIFO read would block without using CPU)."""
    zoo, kinds = _zoo(tmp_path)
    vmfuzz = [sys.executable, "-m", "vmfuzz"]
    worst: dict[str, dict[str, Any]] = {}
    problems = []
    for name in sorted(kinds):
        p = str(zoo / name)
        runs = {
            "replay": [*vmfuzz, "replay", p],
            "show": [*vmfuzz, "show", p],
            "pytest": [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                       "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"),
                       "--vmfuzz-corpus", str(zoo), p],
        }
        if not os.path.exists(zoo / name):
            # pytest refuses a dangling path as an argument: collected through its folder.
            runs["pytest"][-1:] = [str(zoo), "-k", Path(name).stem]
        for reader, argv in runs.items():
            wall_limit = 3 * SECONDS if reader == "pytest" else SECONDS
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=wall_limit,
                                      preexec_fn=_limit_child, cwd=tmp_path)
            except subprocess.TimeoutExpired:
                problems.append(f"{reader} {name}: over {wall_limit} s")
                continue
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            w = worst.setdefault(reader, {"wall": 0.0, "cpu": 0.0, "file": ""})
            if cpu > w["cpu"]:
                w.update(cpu=round(cpu, 2), wall=round(wall, 2), file=name)
            w["maxrss_kb"] = after.ru_maxrss
            err = proc.stderr.decode("utf-8", "replace").splitlines()
            if name in FOLDER_ONLY and reader != "pytest":
                if proc.returncode != 0:
                    problems.append(f"{reader} {name} named on its own: exit {proc.returncode}")
                continue
            if reader == "pytest":
                text = proc.stdout.decode("utf-8", "replace")
                if proc.returncode != 1 or "1 failed" not in text or "Traceback" in text:
                    problems.append(f"pytest {name}: exit {proc.returncode}: {text[-300:]}")
                continue
            if proc.returncode != 2 or len(err) != 1:
                problems.append(f"{reader} {name}: exit {proc.returncode}: {err[:3]}")
    print(f"{len(kinds)} files; worst CPU per reader (with its wall time; peak RSS of any "
          f"child): {worst}")
    assert problems == []


if __name__ == "__main__":
    if sys.argv[1:2] == ["drive"]:
        drive(Path(sys.argv[2]), sys.argv[4:], Path(sys.argv[3]))
