"""Shared by the test modules: where the saved failures are, ``python -m vmfuzz`` in a fresh
process, and long ``vmfuzz`` runs started ahead of the tests that read them.

Fixtures:

``repo_root``
    the checkout's root folder (``corpus/``, ``tests/data/``), whatever the cwd.
``vmfuzz_cli``
    ``vmfuzz_cli("fuzz", "--max-examples", "3", "--json")``: the command line users run, in a
    fresh interpreter (this one, so this checkout's vmfuzz), output captured as text.
``saved_case``
    ``saved_case("tests/data/NAME.json")`` or ``saved_case("corpus/bugs/NAME.json")``: a saved
    failure loaded as a corpus case (paths from the repository root, whatever the cwd).
``ahead``
    ``ahead.result(*args)``: the outcome of ``python -m vmfuzz ARGS`` for a test marked
    ``@pytest.mark.run_ahead(*args)``.  Every such run of the selected tests starts when the
    session begins, on the cores pytest leaves idle (one process less than the cores it may
    use, at least one) and at the lowest CPU priority (nice 19), so it takes only CPU nothing
    else wants: the serial in-process tests and it share two cores instead of taking turns.
    The tests that read them run last.  A run not yet started when its test needs it runs in
    the test, at once; one still running (a busy machine starves the low priority) is raced
    by the same run at normal priority, and the first back is the result.  Only runs whose
    assertions cannot depend on when or how fast they ran belong here: runs bounded by work
    (``--max-examples``), not by time, or a measurement whose figures are not asserted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest

from vmfuzz._cores import available_cores
from vmfuzz.corpus import CorpusCase, load

ROOT = Path(__file__).resolve().parent.parent

Completed = subprocess.CompletedProcess

#: errors of the spawn itself (fork or exec of this interpreter), not of the run: seen once on a
#: loaded CI machine as EFAULT from execve in the child.  A spawn is tried three times.
_SPAWN_RETRY = (errno.EFAULT, errno.EAGAIN, errno.ENOMEM)
#: the real Popen, taken at import: a test may replace ``subprocess.Popen`` for a while (to see
#: that a command starts no work), and the run-ahead threads spawn meanwhile
_POPEN = subprocess.Popen


def _spawn(argv: list[str], **kw: Any) -> subprocess.Popen[str]:
    """:class:`subprocess.Popen` tried again (three times in all) when the spawn itself fails
    with a transient error of the machine; any other error, or the third, is raised."""
    for attempt in range(3):
        try:
            return _POPEN(argv, **kw)
        except OSError as e:
            if e.errno not in _SPAWN_RETRY or attempt == 2:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def vmfuzz_cli(*args: str, timeout: float = 300, **kw: Any) -> Completed[str]:
    """``python -m vmfuzz ARGS`` in a fresh process, as :func:`subprocess.run` with output
    captured as text; ``kw`` (``env``, ``cwd``, ``input`` ...) goes to the process."""
    data = kw.pop("input", None)
    if data is not None:
        kw["stdin"] = subprocess.PIPE
    with _spawn([sys.executable, "-m", "vmfuzz", *args], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, **kw) as proc:
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(name="vmfuzz_cli", scope="session")
def _vmfuzz_cli() -> Callable[..., Completed[str]]:
    return vmfuzz_cli


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def saved_case() -> Callable[[str], CorpusCase]:
    def loader(path: str) -> CorpusCase:
        return load(ROOT / path)

    return loader


# ------------------------------------------------------------------------- runs ahead
AHEAD_TIMEOUT = 600.0  # seconds, per run (a guard against a hung process, not a budget)


class Ahead:
    """The ``run_ahead`` runs of one pytest session (see the module docstring)."""

    LOW = 19  # the nice value of a run started ahead

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="run-ahead")
        self._runs: dict[tuple[str, ...], Future[Completed[str]]] = {}
        self._lock = threading.Lock()
        self._procs: dict[tuple[tuple[str, ...], int], subprocess.Popen[str]] = {}
        self._lost: set[tuple[tuple[str, ...], int]] = set()
        self._closed = False

    def start(self, args: tuple[str, ...]) -> None:
        if args not in self._runs:
            self._runs[args] = self._pool.submit(self._run, args, self.LOW)

    def result(self, *args: str) -> Completed[str]:
        run = self._runs.get(args)
        if run is None or run.cancel():  # not marked, or not started yet: run it here
            return self._run(args, 0)
        if not run.done():
            # Still running at low priority, which a busy machine may starve: race it with
            # the same run at normal priority (both give the same result).  The first back
            # wins; the other is killed.
            with ThreadPoolExecutor(max_workers=1) as here:
                now = here.submit(self._run, args, 0)
                wait([run, now], return_when=FIRST_COMPLETED)
                winner = run if run.done() else now
                self._kill(args, self.LOW if winner is now else 0)
            self._runs[args] = winner
        return self._runs[args].result()

    def _run(self, args: tuple[str, ...], nice: int) -> Completed[str]:
        argv = [sys.executable, "-m", "vmfuzz", *args]
        with self._lock:
            if self._closed:
                raise RuntimeError("the session is over")
            if (args, nice) in self._lost:  # lost its race before it started
                self._lost.discard((args, nice))
                return subprocess.CompletedProcess(argv, -9, "", "")
            proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            self._procs[args, nice] = proc
        if nice and hasattr(os, "setpriority"):  # (no preexec_fn: this is a threaded parent)
            with contextlib.suppress(OSError):  # it may have exited already
                os.setpriority(os.PRIO_PROCESS, proc.pid, nice)
        try:
            out, err = proc.communicate(timeout=AHEAD_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            with self._lock:
                self._procs.pop((args, nice), None)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def _kill(self, args: tuple[str, ...], nice: int) -> None:
        with self._lock:
            proc = self._procs.get((args, nice))
            if proc is not None:
                proc.kill()
            else:
                self._lost.add((args, nice))

    def close(self) -> None:
        """Stop: runs not started are dropped, running ones killed (an interrupted session
        leaves no campaign behind)."""
        with self._lock:
            self._closed = True
            for proc in self._procs.values():
                proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


_AHEAD = pytest.StashKey[Ahead]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that read a run started ahead go last (in their order): their runs then have the
    whole session to finish on the idle core."""
    items.sort(key=lambda item: item.get_closest_marker("run_ahead") is not None)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    ahead = Ahead(max(1, available_cores() - 1))
    session.config.stash[_AHEAD] = ahead
    for item in session.items:
        for mark in item.iter_markers("run_ahead"):
            ahead.start(tuple(str(a) for a in mark.args))


def pytest_sessionfinish(session: pytest.Session) -> None:
    ahead = session.config.stash.get(_AHEAD, None)
    if ahead is not None:
        ahead.close()


@pytest.fixture(scope="session")
def ahead(request: pytest.FixtureRequest) -> Iterator[Ahead]:
    started = request.config.stash.get(_AHEAD, None)
    if started is not None:
        yield started
        return
    alone = Ahead(1)  # a session that started nothing ahead: every run runs in its test
    yield alone
    alone.close()
