"""The pool folder: entries stored as case JSON, loaded, trusted or re-run, shared, merged."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from vmfuzz import _poolstore as ps
from vmfuzz.campaign import fuzz
from vmfuzz.case import Case, OpCall, Schedule, TaskSpec
from vmfuzz.kernel import KernelConfig
from vmfuzz.pool import Entry, Pool

FIXED = KernelConfig(boot_pages=0)
BUG = attrs.evolve(FIXED, bugs=frozenset({"detach_vmas_outside_ptl"}))


def _entry(i: int = 0, config: KernelConfig = FIXED) -> Entry:
    """A small program (an mmap racing a munmap of page ``i``) as a pool entry."""
    tasks = (TaskSpec("T0", (OpCall("mmap", {"mm": 0, "addr": i, "npages": 1}),)),
             TaskSpec("T1", (OpCall("munmap", {"mm": 0, "addr": i, "npages": 1}),)))
    return Entry(Case(config, tasks, Schedule("decisions", decisions=(0, 0, 0))), 6,
                 ((0, i), (1, None)), (("", f"p{i}"), ("a", f"b{i}")), (2, 5))


def test_entries_round_trip_and_are_trusted(tmp_path: Path) -> None:
    store = ps.PoolStore(tmp_path)
    assert store.add([_entry(0), _entry(1), _entry(0)]) == 2
    data = json.loads((tmp_path / "pool-s0.json").read_text())
    assert data["format"] == "vmfuzz-pool" and len(data["entries"]) == 2
    assert data["entries"][0]["case"]["format"] == "vmfuzz-case"  # a case, as corpus files
    got = ps.PoolStore(tmp_path, "s1").load(FIXED)
    assert got.entries == [_entry(0), _entry(1)] and not got.rerun and not got.warnings


def test_a_damaged_entry_or_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    ps.PoolStore(tmp_path).add([_entry(0), _entry(1), _entry(2)])
    f = tmp_path / "pool-s0.json"
    data = json.loads(f.read_text())
    data["entries"][1]["case"]["tasks"][0]["ops"][0]["op"] = "no_such_op"
    data["entries"][2]["targets"] = [[0, "x"]]
    data["entries"].append(17)
    f.write_text(json.dumps(data))
    (tmp_path / "pool-s1.json").write_text('{"format": "vmfuzz-pool", "entr')
    (tmp_path / "pool-s2.json").write_text('{"format": "vmfuzz-case", "version": 1}')
    got = ps.PoolStore(tmp_path, "s9").load(FIXED)
    assert got.entries == [_entry(0)]
    text = "\n".join(got.warnings)
    assert "3 damaged or unusable entries skipped" in text and "no_such_op" in text
    assert "pool-s1.json: not a pool file (malformed JSON" in text
    assert "pool-s2.json: not a pool file" in text


def test_another_model_or_kernel_is_rerun_other_sizes_skipped(tmp_path: Path) -> None:
    ps.PoolStore(tmp_path).add([_entry(0), _entry(1), _entry(2, attrs.evolve(FIXED, nr_mms=5))])
    f = tmp_path / "pool-s0.json"
    data = json.loads(f.read_text())
    data["entries"][0]["case"]["model"]["digest"] = "0" * 16
    f.write_text(json.dumps(data))
    got = ps.PoolStore(tmp_path, "s1").load(FIXED)
    assert got.entries == [_entry(1)]
    assert [c.tasks for c in got.rerun] == [_entry(0).case.tasks]
    assert "other sizes" in got.warnings[0]
    bug = ps.PoolStore(tmp_path, "s1").load(BUG)  # stored on the fixed kernel: re-run
    assert not bug.entries and [c.config for c in bug.rerun] == [BUG, BUG]


def test_a_writer_keeps_its_newest_entries_and_picks_up_the_others(tmp_path: Path) -> None:
    a, b = ps.PoolStore(tmp_path, "s0", capacity=2), ps.PoolStore(tmp_path, "s1")
    a.load(FIXED), b.load(FIXED)
    a.add([_entry(0), _entry(1), _entry(2)])
    assert ps.PoolStore(tmp_path, "x").load(FIXED).entries == [_entry(1), _entry(2)]
    assert b.pickup(FIXED).entries == [_entry(1), _entry(2)]
    assert b.pickup(FIXED).entries == []  # nothing changed since
    a.add([_entry(3)])
    assert b.pickup(FIXED).entries == [_entry(3)]


def test_merge_of_folders(tmp_path: Path) -> None:
    ps.PoolStore(tmp_path / "a").add([_entry(0), _entry(1)])
    ps.PoolStore(tmp_path / "b", "s3").add([_entry(1), _entry(2)])
    (tmp_path / "b" / "pool-s4.json").write_text("[]")
    n, warnings = ps.merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert n == 3 and len(warnings) == 1 and "pool-s4.json" in warnings[0]
    assert [f.name for f in (tmp_path / "m").iterdir()] == ["pool-merged.json"]
    assert ps.PoolStore(tmp_path / "m").load(FIXED).entries == [_entry(i) for i in range(3)]


def test_adopt_takes_an_entry_only_for_a_pair_not_met() -> None:
    pool = Pool(FIXED)
    assert pool.adopt(_entry(0)) and not pool.adopt(_entry(0))
    assert pool.entries == [_entry(0)] and pool.hits[("", "p0")] == 1


def test_a_campaign_stores_its_pool_and_the_next_starts_with_it(tmp_path: Path) -> None:
    ps.PoolStore(tmp_path, "x").add([_entry(0), _entry(1)])
    first = fuzz(FIXED, seed_value=3, budget=None, max_examples=4, mutants=8, pool_dir=tmp_path)
    stored = ps.PoolStore(tmp_path, "y").load(FIXED).entries
    assert first.pool_loaded == 2 and len(stored) > 2 and not first.pool_warnings
    assert (tmp_path / "pool-s0.json").is_file()  # what its mutants added
    again = fuzz(FIXED, seed_value=3, budget=None, max_examples=4, mutants=8, pool_dir=tmp_path)
    assert again.pool_loaded == len(stored)


def test_a_stored_program_that_fails_on_this_kernel_is_the_campaigns_failure(
    tmp_path: Path,
) -> None:
    """Stored on the fixed kernel, re-run on the bug kernel before the first example."""
    ps.PoolStore(tmp_path).add([_entry(0)])
    r = fuzz(BUG, seed_value=0, budget=None, max_examples=50, mutants=8, pool_dir=tmp_path,
             verify_minimal=False, post_shrink_runs=10)
    assert r.found and r.invariant == "lock_not_held" and r.examples == 0


@pytest.mark.parametrize("where", ["file", "missing"])
def test_cli_pool_folder(tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    from vmfuzz.cli import main

    target = tmp_path / "p"
    if where == "file":
        target.write_text("x")
        assert main(["fuzz", "--pool", str(target), "--max-examples", "1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--pool: cannot write the pool folder" in err
    else:
        assert main(["fuzz", "--pool", str(target), "--max-examples", "2", "--mutants", "4",
                     "--seed", "1", "--no-save", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["pool"]["dir"] == str(target) and (target / "pool-s0.json").is_file()
