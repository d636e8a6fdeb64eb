"""Which vmfuzz ran (vmfuzz/_provenance.py): the digest names the code, not the layout, and a
zoo whose campaigns ran other code says so."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from vmfuzz import _cmd_zoo, _zoo
from vmfuzz._provenance import provenance, source_digest


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def test_the_digest_names_the_code_not_the_layout(tmp_path: Path) -> None:
    """A checkout keeps strategies/ beside vmfuzz/, an installed copy inside it: same code,
    same digest.  One byte changed, or a file added, and it differs; caches do not count."""
    files = {"__init__.py": "x = 1\n", "kernel/mm.py": "def f(): pass\n"}
    side = tmp_path / "checkout"
    _tree(side / "vmfuzz", files)
    _tree(side / "strategies", {"_pool.py": "POOL = 1\n"})
    nested = tmp_path / "site"
    _tree(nested / "vmfuzz", {**files, "strategies/_pool.py": "POOL = 1\n",
                              "__pycache__/junk.py": "stale"})
    a = source_digest({"vmfuzz": side / "vmfuzz", "vmfuzz.strategies": side / "strategies"})
    b = source_digest({"vmfuzz": nested / "vmfuzz",
                       "vmfuzz.strategies": nested / "vmfuzz" / "strategies"})
    assert a == b and len(a) == 12
    (side / "strategies" / "_pool.py").write_text("POOL = 2\n")
    c = source_digest({"vmfuzz": side / "vmfuzz", "vmfuzz.strategies": side / "strategies"})
    _tree(side / "strategies", {"_pool.py": "POOL = 1\n", "new.py": ""})
    d = source_digest({"vmfuzz": side / "vmfuzz", "vmfuzz.strategies": side / "strategies"})
    assert len({a, c, d}) == 3


def test_a_campaign_json_says_which_code_ran(
    vmfuzz_cli: Callable[..., CompletedProcess[str]],
) -> None:
    res = vmfuzz_cli("fuzz", "--max-examples", "1", "--json", "--no-save")
    assert res.returncode == 0, res.stderr
    ran = json.loads(res.stdout)["vmfuzz"]
    assert ran == provenance()
    import hypothesis  # a seed draws the same examples only under the same Hypothesis

    assert ran["hypothesis"] == hypothesis.__version__


_RUN_ALL = _zoo.run_all


def _zoo_with(code: str | None, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    """``vmfuzz zoo --json`` over one made-up campaign that reports running ``code``."""
    ran = {**provenance(), "code": code, "path": "/elsewhere/vmfuzz"}

    def runner(bug: str, seed: int, budget: float, corpus: str | None,
               workers: int = 1) -> _zoo.Campaign:
        return _zoo.Campaign(bug, seed, {"found": False, "vmfuzz": ran})

    monkeypatch.setattr(_zoo, "run_all", lambda *a, **k: _RUN_ALL(*a, **k, runner=runner))
    args = argparse.Namespace(bug=["detach_vmas_outside_ptl"], all=False, seeds="0", budget=1.0,
                              jobs=1,
                              need=None, fixed=False, corpus=None, json=True, markdown=False,
                              workers=None)
    _cmd_zoo.run(args)
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_the_zoo_warns_when_its_campaigns_ran_other_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out, err = _zoo_with("0123456789ab", monkeypatch, capsys)
    assert out["vmfuzz"] == provenance()
    assert "warning: campaigns run vmfuzz from /elsewhere/vmfuzz (code 0123456789ab)" in err
    out, err = _zoo_with(provenance()["code"], monkeypatch, capsys)
    assert "warning" not in err
