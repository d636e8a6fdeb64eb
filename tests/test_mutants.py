"""The mutation benchmark's mutants (vmfuzz/_mutants/) and its harness.

Default run (pure text, fast): every patch parses, has its header, applies exactly to the
current tree and changes the patched module's syntax tree; every witness loads as a finding
without bug switches.  Marker ``long``: every witness fails with its check on its mutant (a
patched copy, in a fresh process) and is clean on the fixed model.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from vmfuzz import _bench_mutants as bm
from vmfuzz import _patch, corpus

NAMES = bm.names()


def test_there_are_mutants() -> None:
    assert len(NAMES) >= 3
    conc = sum(bm.load(n).concurrency_only for n in NAMES)
    assert conc * 3 >= 2 * len(NAMES), "at least two thirds must be concurrency-only"


@pytest.mark.parametrize("name", NAMES)
def test_patch_applies_and_changes_code(name: str) -> None:
    m = bm.load(name)
    roots = bm.installed_roots()
    for source, text in bm.patched_files(m, roots).items():
        before = ast.dump(ast.parse(source.read_text(encoding="utf-8")))
        assert ast.dump(ast.parse(text)) != before, f"{name}: {source.name} is unchanged"


@pytest.mark.parametrize("name", NAMES)
def test_witness_is_a_finding(name: str) -> None:
    m = bm.load(name)
    cc = corpus.load(m.witness)
    assert cc.is_finding and cc.expected == "clean"
    assert not cc.case.config.bugs, "a witness runs the fixed model's code, no switch"
    assert m.witness_check() == json.loads(m.witness.read_text())["found"]["check"]


@pytest.mark.long
@pytest.mark.parametrize("name", NAMES)
def test_witness_fails_on_its_mutant_only(name: str) -> None:
    m = bm.load(name)
    with bm.mutated(m) as copy:
        v = bm.witness_verdicts(m, copy)
    assert v["observable"], v["why_not"]


# --------------------------------------------------------------------------- the applier
_FILE = "a\nb\nc\nd\ne\nf\n"


def _diff(body: str) -> str:
    return "# mimics: x\n--- a/f.py\n+++ b/f.py\n" + body


def test_hunks_apply_by_context_not_line_numbers() -> None:
    p = _patch.parse(_diff("@@ -40,3 +40,3 @@\n c\n-d\n+D\n e\n"))
    assert _patch.apply(p, lambda _: "x\n" + _FILE) == {"f.py": "x\na\nb\nc\nD\ne\nf\n"}
    assert p.fields() == {"mimics": "x"}


def test_missing_or_ambiguous_context_is_refused() -> None:
    gone = _patch.parse(_diff("@@ -1,2 +1,2 @@\n q\n-d\n+D\n"))
    with pytest.raises(_patch.PatchError, match="does not apply"):
        _patch.apply(gone, lambda _: _FILE)
    twice = _patch.parse(_diff("@@ -1,1 +1,1 @@\n-a\n+A\n"))
    with pytest.raises(_patch.PatchError, match="ambiguous: its old lines occur 2 times"):
        _patch.apply(twice, lambda _: _FILE + _FILE)


def test_malformed_patches_are_refused() -> None:
    for text, msg in [("no diff here\n", "not a unified diff"),
                      (_diff("@@ -1,2 +1,2 @@\n a\n"), "ends early"),
                      (_diff("@@ -1,1 +1,1 @@\n a\n"), "changes nothing"),
                      (_diff("@@ -1,1 +1,1 @@\n?a\n"), "starts with")]:
        with pytest.raises(_patch.PatchError, match=msg):
            _patch.parse(text)


def test_work_budgets_and_seed_lists() -> None:
    assert bm.parse_budget("300ex") == ["--max-examples", "300"]
    assert bm.parse_budget("1.5Msteps") == ["--budget", "1.5Msteps"]
    assert bm.parse_budget("60cpu") == ["--budget", "60cpu"]
    for wall in ("60s", "2m"):
        with pytest.raises(ValueError, match="wall time"):
            bm.parse_budget(wall)
    with pytest.raises(ValueError, match="a work budget"):
        bm.parse_budget("lots")
    assert bm.parse_seeds("2") == [0, 1]
    assert bm.parse_seeds("3,5-6") == [3, 5, 6]


def test_a_campaign_that_never_returns_is_stopped_at_the_cpu_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mutant can make one model step spin forever (no step budget sees it): the benchmark's
    campaign process is stopped at CAMPAIGN_CPU_LIMIT seconds of CPU, and says so."""
    import signal
    import sys

    monkeypatch.setattr(bm, "CAMPAIGN_CPU_LIMIT", 1)
    rc, _, _, cpu = bm._run([sys.executable, "-c", "while True: pass"], tmp_path)
    assert rc == -signal.SIGXCPU and cpu >= 0.5
