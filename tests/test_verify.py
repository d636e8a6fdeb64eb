"""Bounded verification (``vmfuzz verify``, ``replay --verify``) and checks chosen per run.

Every case here is a real race of the model (a historical bug switch), never a hint: the
bug kernel must fail on some schedule of the case's program and the fixed kernel on none.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
from vmfuzz.invariants import CHECKS
from vmfuzz.invariants._choice import choice_error, choose

from vmfuzz import _zoo
from vmfuzz.case import execute
from vmfuzz.cli import main
from vmfuzz.corpus import CorpusError, from_json, load, replay, to_json
from vmfuzz.kernel import BUGS
from vmfuzz.kernel.bugs import CONSEQUENCES
from vmfuzz.verify import case_bound, verify

ROOT = Path(__file__).resolve().parent.parent
VMA_ADJUST = ROOT / "corpus/bugs/vma_adjust_no_anon_vma_lock.json"
DETACH = ROOT / "corpus/bugs/detach_vmas_outside_ptl.json"
MAIL_002 = ROOT / "corpus/mail/seed002_rmap_walk_vs_vma_adjust.json"
MAIL_004 = ROOT / "corpus/mail/seed004_mmap_cache_holds_detached_vma.json"


def test_default_bound_is_the_recorded_schedules_preemptions_when_more_than_two() -> None:
    """A lock-step livelock needs a switch at every step of its round: verified at two
    preemptions it would read as a bug that never shows.  Both its recorded form (decisions)
    and the mail's explicit steps give their own count; a one-switch race stays at two."""
    assert case_bound(load(ROOT / "corpus/bugs/anon_vma_trylock_retry.json")) == 7
    assert case_bound(load(ROOT / "corpus/mail/seed003_trylock_retry_livelock.json")) == 6
    assert case_bound(load(VMA_ADJUST)) == 2 and case_bound(load(MAIL_004)) == 2


def test_the_recorded_bound_counts_preemptions_not_free_departures() -> None:
    """A campaign's case whose run has 2 preemptions and two more departures from the default
    policy where the running task had blocked or ended (free, as the search counts): its
    bound is 2, the count fuzz reported, not the 4 departures of its preemption list."""
    from vmfuzz.shrink._schedules import to_preemptions

    cc = load(Path(__file__).resolve().parent / "data"
              / "unuse_process_two_preemptions_four_departures.json")
    assert len(to_preemptions(cc.case, tuple(cc.case.schedule.decisions))) == 4
    assert case_bound(cc) == 2


def test_verify_counts_the_bug_kernel_and_the_fixed_kernel() -> None:
    v = verify(load(VMA_ADJUST).case, bound=2)
    assert v.fixed is not None and v.ok
    assert 0 < v.main.violations < v.main.schedules  # the race needs its schedule
    assert v.main.outcomes["rmap_reachable"] == v.main.violations
    assert v.fixed.clean and v.fixed.schedules > 0
    assert v.line() == (
        f"<= 2 preemptions: violation on {v.main.violations} of {v.main.schedules} schedules "
        f"(rmap_reachable {v.main.violations}); fixed kernel clean on all "
        f"{v.fixed.schedules} schedules")
    # The first failing schedule is re-run with its trace and fails the same way.
    assert v.main.first is not None and v.main.first.outcome.check == "rmap_reachable"
    assert v.main.first.sched.trace
    # Fewer preemptions, fewer schedules: bound 0 is the non-preemptive orders only.
    assert verify(load(VMA_ADJUST).case, bound=0).main.schedules < v.main.schedules


def test_a_search_cut_short_never_reads_as_clean() -> None:
    cc = load(VMA_ADJUST)
    fixed = attrs.evolve(cc.case, config=attrs.evolve(cc.case.config, bugs=frozenset()))
    v = verify(fixed, bound=2, limit=3)
    assert v.fixed is None and not v.main.complete and v.main.schedules == 3
    assert not v.ok and "cut short" in v.line()
    assert verify(fixed, bound=2).ok  # the whole search: clean on all


def test_turning_a_check_off_shows_the_race_consequence() -> None:
    """Seed 002: with rmap_reachable off, the mail's program leaves a migration pte behind
    after its page is unlocked on some schedule; the fixed kernel on none."""
    cc = load(MAIL_002)
    case = attrs.evolve(cc.case, config=choose(cc.case.config, None, ["rmap_reachable"]))
    v = verify(case, bound=2)
    assert v.ok and set(v.main.outcomes) - {"clean"} == {"migration_pte_page_locked"}


def test_the_unlocked_detach_ends_in_a_freed_cached_vma() -> None:
    """Seed 004: with lock_not_held off, the swap_out scan's find_vma caches the vma munmap
    detached without page_table_lock, and the next find_vma reads it after munmap freed it;
    with the detach under the lock, no schedule of that program does."""
    cc = load(MAIL_004)
    assert cc.case.config.no_checks == {"lock_not_held"}
    v = verify(cc.case, bound=1)
    assert v.ok and set(v.main.outcomes) - {"clean"} == {"use_after_free"}
    assert v.fixed is not None and v.fixed.clean


def test_an_engine_check_turned_off_is_not_raised() -> None:
    cc = load(DETACH)
    assert execute(cc.case, cc.source()).outcome.check == "lock_not_held"
    off = attrs.evolve(cc.case, config=choose(cc.case.config, None, ["lock_not_held"]))
    assert execute(off, cc.source(strict=False)).outcome.check is None


def test_a_case_records_its_checks_and_replay_honours_them(tmp_path: Path) -> None:
    cc = load(VMA_ADJUST)
    config = choose(cc.case.config, None, ["rmap_reachable"])
    data = to_json(attrs.evolve(cc, case=attrs.evolve(cc.case, config=config),
                                expected="clean"))
    assert data["config"]["checks"] == {"off": ["rmap_reachable"]}
    back = from_json(json.loads(json.dumps(data)))
    assert back.case.config.no_checks == {"rmap_reachable"}
    assert replay(back, check_fix=False).observed == "clean"  # the recorded check is off
    assert "checks" not in to_json(cc)["config"]  # nothing chosen, nothing written
    for bad, says in (({"off": ["nope"]}, "unknown check nope"),
                      ({"off": ["deadlock"]}, "deadlock cannot be turned off"),
                      ({"only": ["bad_page"], "off": ["bad_page"]}, "both chosen"),
                      ({"of": []}, "unknown field 'of'")):
        data["config"]["checks"] = bad
        with pytest.raises(CorpusError, match=says):
            from_json(data, "x.json")


def test_check_choice_errors() -> None:
    assert choice_error(None, ["rmap_reachable", "lock_not_held"]) is None
    assert choice_error(["data_integrity"], []) is None
    assert "livelock cannot be turned off" in (choice_error(None, ["livelock"]) or "")


def test_verify_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["verify", str(DETACH), "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "violation on 3 of 5 schedules (lock_not_held 3); fixed kernel clean on all 5" in out
    assert "1 case: 1 verified" in out
    # With the check that catches it off, the bug shows on no schedule: not verified.
    assert main(["verify", str(DETACH), "--no-check", "lock_not_held", "--json",
                 "--no-save"]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert not obj["ok"] and obj["kernel"]["violations"] == 0 and obj["fixed"]["complete"]
    for argv, says in ((["--bound", "-1"], "--bound must be >= 0"),
                       (["--no-check", "nope"], "unknown check nope"),
                       (["--bug", "nope"], "unknown bug nope")):
        assert main(["verify", str(DETACH), *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1


def test_replay_verify(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--verify", str(DETACH)]) == 0
    out = capsys.readouterr().out
    assert "verify: <= 2 preemptions: violation on 3 of 5 schedules" in out


def test_consequences_name_registered_bugs_and_checks() -> None:
    for name, c in CONSEQUENCES.items():
        assert name in BUGS, name
        assert c.check in CHECKS and all(e in CHECKS for e in c.early), name
        assert c.early and c.why, f"{name}: a consequence entry turns early checks off"
        assert choice_error(None, c.early) is None
    assert BUGS["migrate_no_anon_vma_ref"].consequence.check == "use_after_free"


def test_zoo_consequence_column() -> None:
    name = "vma_adjust_no_anon_vma_lock"
    cmd = _zoo.command(name, 3, 60.0, None, consequence=True, max_examples=500)
    assert cmd[cmd.index("--no-check") + 1] == "rmap_reachable"
    assert "--max-examples" in cmd and "--budget" not in cmd
    shrunk = {"tasks": 2, "preemptions": 2, "steps": 30}

    def camp(seed: int, check: str, consequence: bool) -> _zoo.Campaign:
        out = {"found": True, "invariant": check, "shrunk": shrunk,
               "first_failure_seconds": 1.0}
        return _zoo.Campaign(name, seed, out, consequence=consequence)

    default = [camp(s, "rmap_reachable", False) for s in range(3)]
    row = _zoo.summarize(name, default, need=2)
    assert row.met
    both = _zoo.with_consequence(row, [camp(0, "migration_pte_page_locked", True),
                                       camp(1, "rmap_reachable", True),
                                       camp(2, "migration_pte_page_locked", True)], need=2)
    assert both.met and both.consequence_good == 2
    # The early check is not the consequence: one seed of three is not enough.
    short = _zoo.with_consequence(row, [camp(0, "migration_pte_page_locked", True),
                                        camp(1, "rmap_reachable", True)], need=2)
    assert not short.met
    table = _zoo.text([both])
    assert "consequence" in table.splitlines()[0] and "2/3" in table

def test_zoo_consequence_the_model_cannot_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consequence the model has no path to is explained in the column, not counted."""
    from vmfuzz.kernel.bugs import Consequence

    name = "detach_vmas_outside_ptl"
    monkeypatch.setitem(CONSEQUENCES, name, Consequence(
        "use_after_free", ("lock_not_held",), "why", missing="no reader path"))
    missing = _zoo.with_consequence(_zoo.summarize(name, [], 0), [], 0)
    assert "not modelled" in _zoo.text([missing])
    assert _zoo.consequence_notes([missing]) == [f"{name}: consequence not modelled: "
                                                 "no reader path"]


def test_zoo_explains_a_consequence_below_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "vma_adjust_no_anon_vma_lock"
    c = attrs.evolve(BUGS[name].consequence, measured="rare: 1 of 100")
    monkeypatch.setitem(CONSEQUENCES, name, c)
    out = {"found": False}
    row = _zoo.with_consequence(_zoo.summarize(name, [], 0),
                                [_zoo.Campaign(name, 0, out, consequence=True)], need=1)
    assert not row.met
    assert _zoo.consequence_notes([row]) == [f"{name}: consequence below the bar: rare: 1 of 100"]
    met = attrs.evolve(row, met=True)
    assert _zoo.consequence_notes([met]) == []


def test_a_patch_under_test_must_be_clean_on_every_schedule() -> None:
    """--bug SWITCH treats the switches as a patch: its kernel alone, clean or the first
    failing schedule (here the historical switch, whose race shows on some schedule)."""
    v = verify(load(VMA_ADJUST).case, bound=2, patch=True)
    assert v.fixed is None and v.main.kernel == "patched" and not v.ok
    assert v.line().startswith("<= 2 preemptions: kernel with vma_adjust_no_anon_vma_lock: "
                               "violation on 6 of 17 schedules")
    assert v.failing is v.main


def test_zoo_consequence_only_runs_the_bugs_it_can(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vmfuzz.kernel.bugs import Consequence

    monkeypatch.setitem(CONSEQUENCES, "detach_vmas_outside_ptl", Consequence(
        "use_after_free", ("lock_not_held",), "why", missing="no reader path"))
    ran: list[list[tuple[object, ...]]] = []

    def fake(jobs: list[tuple[object, ...]], *args: object, **kw: object) -> list[_zoo.Campaign]:
        ran.append(jobs)
        return [_zoo.Campaign(str(j[0]), int(str(j[1])), {"found": False},
                              consequence=len(j) > 2 and bool(j[2])) for j in jobs]

    monkeypatch.setattr(_zoo, "run_all", fake)
    argv = ["zoo", "--consequence-only", "--bug", "vma_adjust_no_anon_vma_lock", "--bug",
            "detach_vmas_outside_ptl", "--seeds", "0", "--max-examples", "5", "--json"]
    assert main(argv) == 1  # nothing found: the consequence column is not met
    assert ran[-1] == [("vma_adjust_no_anon_vma_lock", 0, True)]  # detach: not modelled
    rows = {r["bug"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows["detach_vmas_outside_ptl"]["met"]  # explained, not counted
    assert rows["detach_vmas_outside_ptl"]["consequence_missing"]
    assert rows["vma_adjust_no_anon_vma_lock"]["consequence_good"] == 0


def test_soak_keeps_the_checks_of_its_run() -> None:
    from vmfuzz.soak import SoakConfig, SoakError
    from vmfuzz.soak._config import merge_resume_config, validate
    from vmfuzz.soak._plan import profile_named
    from vmfuzz.soak._worker import kernel_config

    run = SoakConfig(bugs=("vma_adjust_no_anon_vma_lock",), no_checks=("rmap_reachable",))
    back = SoakConfig.from_json(json.loads(json.dumps(run.to_json())))
    assert back == run
    config = kernel_config(back, profile_named("wide"))  # scaled: the choice stays
    assert not config.check_on("rmap_reachable") and config.check_on("data_integrity")
    with pytest.raises(SoakError, match="differ"):
        merge_resume_config(run, SoakConfig(no_checks=("lock_not_held",)))
    with pytest.raises(SoakError, match="deadlock cannot be turned off"):
        validate(SoakConfig(no_checks=("deadlock",)))


def test_verify_saves_the_first_failing_schedule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["verify", str(VMA_ADJUST), "--bug", "vma_adjust_no_anon_vma_lock", "--corpus",
            str(tmp_path), "--json"]
    assert main(argv) == 1
    obj = json.loads(capsys.readouterr().out)
    saved = load(obj["saved"])
    assert obj["kernel"]["first"]["check"] == "rmap_reachable"
    assert replay(saved).observed == "rmap_reachable"  # runnable: it fails as it did
