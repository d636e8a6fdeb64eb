"""A corpus that notices a changed model: the model's identity and anchored decisions in saved
cases, a replay that says diverged (never clean) when a yield point moved, `--rerecord`, and
labels that name kernel functions."""

from __future__ import annotations

import ast
import inspect
import json
import re
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from test_corpus_ops import RACE_STEPS, counter_case, registered

from vmfuzz._provenance import code_digest, model_digest
from vmfuzz.case import execute
from vmfuzz.cli import main
from vmfuzz.corpus import (
    DIVERGED,
    REFUSED,
    RERECORDED,
    UNCHANGED,
    UPGRADED,
    CorpusCase,
    attempt,
    case_files,
    load,
    replay,
    rerecord,
    save_failure,
    to_json,
)
from vmfuzz.kernel import swapin
from vmfuzz.schedules import Explicit

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


@pytest.fixture(scope="module", autouse=True)
def _test_ops() -> Iterator[None]:
    with registered():
        yield


def committed() -> list[CorpusCase]:
    files, errors = case_files([CORPUS])
    assert files and not errors
    return [load(f) for f in files]


# ----------------------------------------------------------------------------- CI's check
def test_the_committed_corpus_replays_its_traces_exactly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`vmfuzz replay --strict-trace corpus/`: every case shows its recorded outcome on its
    recorded trace (after a deliberate model change: `vmfuzz replay --rerecord`)."""
    rc = main(["replay", "--strict-trace", "--no-fix-check", str(CORPUS)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert re.search(r"^\d+ cases: \d+ ok$", out.splitlines()[-1])


def test_every_recorded_case_records_its_model_and_anchors() -> None:
    for cc in committed():
        if cc.trace_sha256 is None:  # hand-written: no record to pin
            continue
        assert cc.model is not None, cc.path
        if cc.explicit is None and cc.case.schedule.kind == "decisions":
            assert cc.anchors, cc.path


_PYTHON_ONLY = re.compile(r"^_|_\d+(:|$)|\.py|<")


def test_no_label_in_a_committed_trace_is_a_python_name() -> None:
    """Labels are kernel function names: no helper (``_do_swap_page``), no line-number or
    variant suffix (``_248``), in any committed case's run, fixed run included."""
    seen: set[str] = set()
    for cc in committed():
        fixed = attrs.evolve(cc.case, config=attrs.evolve(cc.case.config, bugs=frozenset()))
        for case in (cc.case, fixed):
            att = attempt(cc, case, strict=False)
            assert att.sched is not None
            seen.update(s.label for s in att.sched.trace)
    bad = sorted(label for label in seen if _PYTHON_ONLY.search(label.split(":")[0]))
    assert not bad
    assert "read_swap_cache_async:spin_lock(tree_lock)" in seen  # was a helper's name


# ------------------------------------------------------- one more yield point in do_swap_page
def _yielding_statements(fn: Callable[..., Any]) -> tuple[ast.FunctionDef, list[ast.stmt]]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    stmts = [s for s in ast.walk(func) if isinstance(s, ast.stmt) and s is not func
             and any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in ast.walk(s))
             and not isinstance(s, (ast.If, ast.For, ast.While))]
    return func, stmts


def _with_extra_yield(fn: Callable[..., Any], index: int) -> Callable[..., Any]:
    """``fn`` (a function of the swapin module) with ``yield "do_swap_page:extra"`` inserted
    before its ``index``-th statement that yields."""
    func, stmts = _yielding_statements(fn)
    target = stmts[index]
    extra = ast.parse('yield "do_swap_page:extra"').body[0]
    for node in ast.walk(func):
        for field in ("body", "orelse"):
            body = getattr(node, field, None)
            if isinstance(body, list) and target in body:
                body.insert(body.index(target), extra)
    namespace = dict(vars(swapin))
    exec(compile(ast.fix_missing_locations(ast.Module([func], [])), "<extra>", "exec"), namespace)
    return namespace[fn.__name__]  # type: ignore[no-any-return]


_VARIANTS = [
    (name, i)
    for name in ("do_swap_page", "_do_swap_page")
    for i in range(len(_yielding_statements(getattr(swapin, name))[1]))
]


def drifted(name: str, index: int, cases: list[CorpusCase], anchored: bool = True) -> list[
        tuple[str, str, str]]:
    """(case, expected, observed + message) of every bug case on the drifted model."""
    rows = []
    for cc in cases:
        if not cc.is_bug_case:
            continue
        if not anchored:
            cc = attrs.evolve(cc, anchors=None)
        r = replay(cc, check_fix=False)
        rows.append((cc.name, cc.expected, f"{r.observed}: {r.attempt.message}"))
    return rows


@pytest.mark.parametrize(("name", "index"), _VARIANTS)
def test_an_extra_yield_in_do_swap_page_never_reads_as_clean(
    name: str, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every committed bug case shows its recorded check, or says diverged with the step and
    labels where its schedule stopped applying: none is clean."""
    cases = committed()
    monkeypatch.setattr(swapin, name, _with_extra_yield(getattr(swapin, name), index))
    for case, expected, got in drifted(name, index, cases):
        observed = got.split(":", 1)[0]
        assert observed in (expected, DIVERGED), (case, got)
        if observed == DIVERGED:
            assert re.search(r"\(step \d+\)|at step \d+|already exited \(step \d+\)", got), got


def test_without_anchors_a_drifted_model_reads_some_bug_as_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The anchors are what catch it: the bare decision lists run other interleavings (with
    the extra yield at the top of do_swap_page, swapin_no_swapcache_recheck reads clean)."""
    monkeypatch.setattr(swapin, "do_swap_page", _with_extra_yield(swapin.do_swap_page, 0))
    clean = {c for c, _, got in drifted("do_swap_page", 0, committed(), anchored=False)
             if got.startswith("clean")}
    assert "swapin_no_swapcache_recheck" in clean


def test_after_an_extra_yield_rerecord_keeps_every_race(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vmfuzz replay --rerecord` on the drifted model: every case is re-recorded (or left
    unchanged), each on its anchors (the same switches at the same labels) or, where those no
    longer give its check, on its decisions with the check at its recorded label, and says
    which; the copy replays its traces exactly again."""
    copy = tmp_path / "corpus"
    shutil.copytree(CORPUS, copy)
    monkeypatch.setattr(swapin, "do_swap_page", _with_extra_yield(swapin.do_swap_page, 0))
    before = {cc.name: cc for cc in map(load, case_files([copy])[0])}
    assert main(["replay", "--rerecord", "--json", str(copy)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    said = {x["name"]: x["message"] for x in lines}
    after = {cc.name: cc for cc in map(load, case_files([copy])[0])}
    moved = [n for n, cc in after.items() if cc.trace_sha256 != before[n].trace_sha256]
    assert "swapin_no_swapcache_recheck" in moved
    for name in moved:
        old, new = before[name].anchors, after[name].anchors
        assert old and new, name
        if "on its anchors" in said[name]:
            assert [(a.task, dict(a.at)) for a in old] == [(a.task, dict(a.at)) for a in new]
        else:
            assert "the switches moved" in said[name]
            assert after[name].violation == {**before[name].violation,
                                             "step": after[name].violation["step"]}
    assert main(["replay", "--strict-trace", "--no-fix-check", str(copy)]) == 0


# ----------------------------------------------------------------------- saving and loading
def test_a_saved_case_records_the_model_and_anchors_its_switches(tmp_path: Path) -> None:
    case = counter_case()
    run = execute(case, Explicit(RACE_STEPS))
    cc = load(save_failure(case, run, tmp_path))
    assert cc.model is not None and cc.model["digest"] == model_digest()
    assert cc.anchors and cc.model_changed is False
    switches = [i for i, t in enumerate(cc.case.schedule.decisions)
                if i == 0 or t != cc.case.schedule.decisions[i - 1]]
    assert [a.decision for a in cc.anchors] == switches
    assert all(set(a.at) <= {t.name for t in case.tasks} for a in cc.anchors)
    data = json.loads(cc.path.read_text()) if cc.path else {}
    assert data["model"] == cc.model and data["schedule"]["anchors"][0]["run"] == "T1"
    assert "vmfuzz_version" not in data["metadata"]


def test_a_case_without_anchors_or_model_still_loads_and_replays(tmp_path: Path) -> None:
    case = counter_case()
    cc = load(save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path))
    data = to_json(cc)
    del data["model"], data["schedule"]["anchors"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    again = load(old)
    assert again.anchors is None and again.model is None and again.model_changed is None
    r = replay(again)
    assert r.ok and r.trace_matches
    out = r.to_json()
    assert out["anchored"] is False and out["model"] is None and out["model_changed"] is None


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda a: a[0].update(decision=999), "decision 999, but the case records"),
        (lambda a: a[0].update(run="T9"), "no task is named 'T9'"),
        (lambda a: a[0]["at"].update(T9="x"), "unknown field 'T9'"),
        (lambda a: a.append(dict(a[0])), "increasing decision order"),
    ],
)
def test_bad_anchors_are_one_line(tmp_path: Path, edit: Callable[[Any], None],
                                  problem: str) -> None:
    case = counter_case()
    data = to_json(load(save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path)))
    edit(data["schedule"]["anchors"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(Exception, match=re.escape(problem)):
        load(bad)


def test_the_digest_ignores_comments_and_docstrings(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """What."""\n    return x + 1  # note\n')
    first = code_digest({"m.py": a})
    a.write_text('"""Another doc."""\n# a comment\n\ndef f(x):\n    return x + 1\n')
    assert code_digest({"m.py": a}) == first
    a.write_text('def f(x):\n    return x + 2\n')
    assert code_digest({"m.py": a}) != first


# ------------------------------------------------------------------------- drift and rerecord
def _drift_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """One more yield point at the top of the test counter operation."""
    import test_corpus_ops

    from vmfuzz.kernel import OPS

    spec = OPS["test_counter_incr"]
    inner = test_corpus_ops._counter_incr

    def incr(k: Any) -> Any:
        yield "test_counter_incr:extra"
        return (yield from inner(k))

    monkeypatch.setitem(OPS, "test_counter_incr", attrs.evolve(spec, fn=incr))


def test_a_moved_yield_point_is_diverged_with_the_step_and_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = counter_case()
    path = save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path)
    cc = load(path)
    data = json.loads(path.read_text())
    data["model"]["digest"] = "0" * 16  # as if saved by another model
    path.write_text(json.dumps(data))
    _drift_counter(monkeypatch)
    r = replay(load(path), check_fix=False)
    assert r.observed == DIVERGED and not r.ok
    assert re.search(r"decision \d+ \(step \d+\) switched to T2 with T1 at "
                     r"test_counter_incr:\w+", r.summary())
    assert "model changed since the case was saved" in r.summary()
    assert r.to_json()["divergence"] and r.to_json()["model_changed"] is True
    assert cc.expected == "test_lost_update"


def test_rerecord_keeps_what_people_wrote_and_refuses_a_lost_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    case = counter_case()
    path = save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path,
                        {"found_by": "test", "seed": 7}, description="two increments race")
    assert rerecord(load(path)).action == UNCHANGED
    before = load(path)
    _drift_counter(monkeypatch)
    rc = main(["replay", "--rerecord", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(RERECORDED), out
    after = load(path)
    assert after.description == before.description and after.metadata == before.metadata
    assert after.expected == before.expected and after.trace_sha256 != before.trace_sha256
    assert replay(after).ok and replay(after).trace_matches
    assert rerecord(after).action == UNCHANGED
    # A model on which the bug does not fire any more: the case is left as it is.
    monkeypatch.setattr("vmfuzz.kernel.Kernel.bug", lambda self, name: False)
    text = path.read_text()
    done = rerecord(load(path))
    assert done.action == REFUSED and "not test_lost_update" in done.message
    assert path.read_text() == text


def test_rerecord_upgrades_an_old_case_without_changing_its_trace(tmp_path: Path) -> None:
    case = counter_case()
    cc = load(save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path))
    old = attrs.evolve(cc, anchors=None, model=None)
    done = rerecord(old, write=False)
    assert done.action == UPGRADED and done.case.trace_sha256 == cc.trace_sha256
    assert done.case.anchors == cc.anchors


# ------------------------------------------------------------------------- explicit steps
def test_a_label_never_reached_is_diverged_with_the_labels_passed() -> None:
    """`run CPU1 until valid_swaphandles` (no such yield label) used to replay as the recorded
    check when a violation followed; a typo gets a suggestion."""
    cc = load(CORPUS / "examples" / "seed001_readahead_vs_try_to_swap_out.json")
    assert cc.explicit is not None and "run CPU1 to completion" in cc.explicit
    for until, hint in [
        ("valid_swaphandles", None),
        ("read_swap_cache_async:add_to_swapcache", "read_swap_cache_async:add_to_swap_cache"),
    ]:
        steps = tuple(s.replace("run CPU1 to completion", f"run CPU1 until {until}")
                      for s in cc.explicit)
        r = replay(attrs.evolve(cc, explicit=steps), check_fix=False)
        assert r.observed == DIVERGED and not r.ok
        msg = r.attempt.message
        assert re.search(r"explicit step 3 .*: CPU1 exited at step \d+ without getting there",
                         msg)
        assert "CPU1 passed: user_access:load, do_page_fault:down_read(mmap_sem), " in msg
        assert ("did you mean" in msg) == (hint is not None)
        if hint is not None:
            assert f"did you mean {hint!r}?" in msg


def test_rerecord_refreshes_a_stale_model_digest_on_the_same_trace(tmp_path: Path) -> None:
    """A model change that moves no trace still changes the digest: rerecord records the new
    one (upgraded), so a committed corpus follows the model without hand edits."""
    case = counter_case()
    path = save_failure(case, execute(case, Explicit(RACE_STEPS)), tmp_path)
    data = json.loads(path.read_text())
    data["model"]["digest"] = "0" * 16  # as if saved by an earlier model
    path.write_text(json.dumps(data))
    stale = load(path)
    assert stale.model_changed is True
    done = rerecord(stale)
    assert done.action == UPGRADED, done.message
    again = load(path)
    assert again.model is not None and again.model["digest"] == model_digest()
    assert again.trace_sha256 == stale.trace_sha256
    assert rerecord(again).action == UNCHANGED
