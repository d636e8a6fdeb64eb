"""The pytest plugin: corpus/**/*.json collected as one test item per case."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_corpus_ops import race_json, registered

pytest_plugins = ["pytester"]


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():  # in-process pytester runs share this registry
        yield


def put(base: Path, rel: str, data: Any) -> Path:
    path = base / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=2))
    return path


def test_cases_are_items_named_after_the_case(pytester: pytest.Pytester) -> None:
    put(pytester.path, "corpus/lost_update.json", race_json())
    put(pytester.path, "corpus/sub/fixed_is_clean.json", race_json(expected="clean", config={},
                                                                   schedule={}))
    put(pytester.path, "elsewhere/not_a_case.json", {"hello": 1})
    result = pytester.runpytest("--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [
        "corpus/lost_update.json::lost_update",
        "corpus/sub/fixed_is_clean.json::fixed_is_clean",
    ]
    pytester.runpytest().assert_outcomes(passed=2)


def test_a_differing_case_fails_with_its_timeline(pytester: pytest.Pytester) -> None:
    put(pytester.path, "corpus/ok.json", race_json())
    put(pytester.path, "corpus/wrong.json", race_json(expected="clean"))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "expected clean, observed test_lost_update" in out
    assert "*** test_lost_update at step 4" in out  # the timeline's footer
    assert "| T2" in out  # and its columns
    result.stdout.fnmatch_lines(["FAILED corpus/wrong.json::wrong*"])


def test_an_unusable_file_fails_with_one_line(pytester: pytest.Pytester) -> None:
    put(pytester.path, "corpus/good.json", race_json())
    put(pytester.path, "corpus/broken.json", json.dumps(race_json())[:30])
    put(pytester.path, "corpus/unknown_op.json",
        race_json(tasks=[{"name": "T1", "ops": [{"op": "no_such_op"}]}]))
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "*corpus/broken.json: malformed JSON (truncated?)*",
        "*corpus/unknown_op.json: tasks[[]0[]].ops[[]0[]].op: unknown operation 'no_such_op'*",
    ])


def test_corpus_option_and_ini(pytester: pytest.Pytester) -> None:
    put(pytester.path, "corpus/default.json", race_json())
    put(pytester.path, "cases/a.json", race_json())
    put(pytester.path, "cases/b.json", race_json())
    result = pytester.runpytest("--vmfuzz-corpus", "cases", "--collect-only", "-q")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == ["cases/a.json::a", "cases/b.json::b"]
    pytester.makeini("[pytest]\nvmfuzz_corpus = cases\n")
    result = pytester.runpytest("--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ids


def test_testpaths_runs_get_the_corpus_explicit_paths_do_not(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntestpaths = tests\n")
    put(pytester.path, "tests/test_one.py", "def test_one():\n    assert True\n")
    put(pytester.path, "corpus/c.json", race_json())
    pytester.runpytest().assert_outcomes(passed=2)  # plain `pytest`: tests + corpus
    pytester.runpytest("tests").assert_outcomes(passed=1)  # an explicit path: just that
    pytester.runpytest("corpus").assert_outcomes(passed=1)
    pytester.runpytest("corpus/c.json").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:vmfuzz").assert_outcomes(passed=1)  # plugin off


def test_no_corpus_folder_is_fine(pytester: pytest.Pytester) -> None:
    put(pytester.path, "test_one.py", "def test_one():\n    assert True\n")
    pytester.runpytest().assert_outcomes(passed=1)


def _long_case() -> dict[str, Any]:
    """A case of the real kernel that runs for a long time on any machine: 3,000 mlock and
    munlock passes over 1,024 pages reach the 1,000,000-step cap (about 40 s of CPU)."""
    span = {"mm": 0, "addr": 0, "npages": 1024}
    ops = [{"op": "mmap", "args": span}]
    ops += [{"op": "mlock", "args": span}, {"op": "munlock", "args": span}] * 3000
    return {"format": "vmfuzz-case", "version": 1,
            "config": {"nr_mms": 1, "pages_per_mm": 1024, "nr_frames": 2048},
            "tasks": [{"name": "T1", "ops": ops}], "max_steps": 1_000_000, "expected": "clean"}


def test_a_case_over_the_time_limit_fails_with_one_line(pytester: pytest.Pytester) -> None:
    put(pytester.path, "corpus/quick.json", race_json())
    put(pytester.path, "corpus/long.json", _long_case())
    result = pytester.runpytest("--vmfuzz-timeout", "0.3")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*corpus/long.json: stopped after 0.3 s, the time limit of one "
                                 "case (--vmfuzz-timeout or the vmfuzz_timeout ini option*"])
    pytester.makeini("[pytest]\nvmfuzz_timeout = 0.2\n")
    pytester.runpytest("corpus/long.json").assert_outcomes(failed=1)


@pytest.mark.parametrize("value", ["nan", "-1", "soon"])
def test_a_bad_time_limit_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    put(pytester.path, "corpus/quick.json", race_json())
    result = pytester.runpytest(f"--vmfuzz-timeout={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--vmfuzz-timeout: expected seconds from 0 (no limit) to "
                                 f"86400, not '{value}'"])
