"""The worked example of docs/your-patch.md, run as a user runs it (``python -m vmfuzz``).

Two plugins in examples/seed003/ write the two proposals of seed 003 (LKML, May 2010) as bug
switches at the anon_vma locking sites: Mel Gorman's trylock-and-retry and Linus Torvalds'
"always lock the deepest anon_vma".  The same campaign (seed, examples, scheduler) finds a
livelock in Mel's and nothing in Linus's; the case it saves replays with no flags, and so does
the copy committed next to the plugins.  With their switches off, the plugins change nothing.

The two campaigns take about 100 s of CPU together (Mel's stops at its first failure, 357
examples, 26 s with the shrinking; Linus's runs all 1500 examples, 73 s): opt-in, ``pytest -m
example``.  The two replay tests take about a second each and stay in the default run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "seed003"
SEED, MAX_EXAMPLES = 1, 1500  # docs/your-patch.md: Mel's found on seeds 0-4, Linus's clean
COMMITTED = EXAMPLE / "cases" / "livelock-vma_adjust-24f008d3.json"


def vmfuzz(*args: str) -> subprocess.Popen[str]:
    """``python -m vmfuzz ARGS`` started in a fresh process, from the repository root."""
    return subprocess.Popen([sys.executable, "-m", "vmfuzz", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(p: subprocess.Popen[str], timeout: float = 900) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def campaign(proposal: str, corpus: Path) -> subprocess.Popen[str]:
    """The campaign of the guide on one proposal: its plugin, its switch, the same settings."""
    return vmfuzz("fuzz", "--plugin", str(EXAMPLE / f"{proposal}.py"), "--bug", proposal,
                  "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--json",
                  "--corpus", str(corpus))


@pytest.mark.example
def test_same_campaign_livelocks_mel_and_not_linus(tmp_path: Path) -> None:
    mel = campaign("mel_trylock_retry", tmp_path / "mel")
    linus = campaign("linus_lock_root", tmp_path / "linus")
    rc, out, err = finish(mel)
    assert rc == 1, err
    found = json.loads(out)
    assert found["found"] and found["invariant"] == "livelock", found["message"]
    assert found["shrunk"]["tasks"] == 2  # rmap_walk_anon and vma_adjust, as Linus feared
    assert "rmap_walk_anon" in found["message"] and "vma_adjust" in found["message"]

    rc, out, err = finish(linus)
    assert rc == 0, err
    clean = json.loads(out)
    assert not clean["found"] and clean["case"] is None
    assert clean["examples"] >= MAX_EXAMPLES

    # The saved case names its plugin: no --plugin needed to replay or draw it.
    rc, out, err = finish(vmfuzz("replay", found["case"]))
    assert rc == 0, out + err
    assert "livelock as recorded" in out and "fix holds on this schedule" in out
    rc, out, err = finish(vmfuzz("show", found["case"]))
    assert rc == 0, err
    assert "<<< livelock" in out


def test_committed_case_replays() -> None:
    """examples/seed003/cases/: the guide's case, replayed with no flags
    (it fails with exit 2 if mel_trylock_retry.py changed since it was saved: save it again)."""
    rc, out, err = finish(vmfuzz("replay", str(COMMITTED)), timeout=120)
    assert rc == 0, out + err
    assert "livelock as recorded" in out


def test_switches_off_change_nothing() -> None:
    """Both plugins loaded, no switch on: the corpus replays line for line as without them."""
    plugins = [arg for p in ("mel_trylock_retry", "linus_lock_root")
               for arg in ("--plugin", str(EXAMPLE / f"{p}.py"))]
    _, without, _ = finish(vmfuzz("replay", "corpus/"), timeout=300)
    _, loaded, err = finish(vmfuzz("replay", *plugins, "corpus/"), timeout=300)
    assert loaded == without, err
    assert "cases:" in loaded
