"""pytest plugin (entry point ``pytest11``): every corpus case is a test item.

``pytest`` collects ``corpus/**/*.json`` (the corpus directory below the rootdir, or the one
given with ``--vmfuzz-corpus DIR`` or the ini option ``vmfuzz_corpus``) as one item per case,
named after the case file.  An item replays its case without Hypothesis and fails, with the
case's timeline, when the outcome differs from the recorded one; an unusable file fails with
the one-line problem.

A case that records plugins (docs/corpus.md) loads them by itself.  More plugins, loaded
before the first case runs (a case saved by a vmfuzz too old to record its plugins):
``--vmfuzz-plugin NAME`` (repeatable; a file relative to the current folder) or the ini option
``vmfuzz_plugins`` (one per line; files relative to the ini file).  A plugin that cannot be
loaded fails every case with the one-line problem.

Each case has a time limit, so that one case that runs away cannot hang a CI run:
``--vmfuzz-timeout SECONDS`` or the ini option ``vmfuzz_timeout`` (default 60; 0: none).  A
case over it fails with one line.  Entries of the corpus named like cases that cannot be read as
one (``*.JSON``, a dangling symlink, a FIFO or a device) are items that fail with their problem,
never skipped in silence.

The corpus is added to the run when pytest collects its default paths (plain ``pytest``, with
or without ``testpaths``); ``pytest corpus/`` or ``pytest corpus/some-case.json`` runs just
cases; ``pytest tests/`` runs no case.  ``-p no:vmfuzz`` turns the plugin off.

The plugin imports the corpus machinery only when a case runs, so a broken model never stops
pytest from starting.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

_CORPUS_KEY = pytest.StashKey[Path]()
_PLUGINS_KEY = pytest.StashKey["str | None"]()  # after loading: None, or the error line
_TIMEOUT_KEY = pytest.StashKey[float]()
DEFAULT_TIMEOUT = 60.0  # seconds per case: the slowest committed case takes well under one


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("vmfuzz", "vmfuzz regression corpus")
    group.addoption(
        "--vmfuzz-corpus",
        dest="vmfuzz_corpus",
        metavar="DIR",
        default=None,
        help="folder of vmfuzz corpus cases collected as tests (default: <rootdir>/corpus, "
        "or the vmfuzz_corpus ini option)",
    )
    parser.addini(
        "vmfuzz_corpus",
        "folder of vmfuzz corpus cases collected as tests, relative to the ini file",
        default="corpus",
    )
    group.addoption(
        "--vmfuzz-plugin",
        dest="vmfuzz_plugins",
        action="append",
        metavar="NAME",
        default=[],
        help="vmfuzz plugin loaded before the corpus cases run: a .py file, an installed "
        "plugin or a module (repeatable; cases load the plugins they record by themselves)",
    )
    group.addoption(
        "--vmfuzz-timeout",
        dest="vmfuzz_timeout",
        metavar="SECONDS",
        default=None,
        help=f"time limit of one corpus case; over it, the case fails (default "
        f"{DEFAULT_TIMEOUT:g}, or the vmfuzz_timeout ini option; 0: no limit)",
    )
    parser.addini(
        "vmfuzz_timeout",
        f"time limit in seconds of one vmfuzz corpus case (default {DEFAULT_TIMEOUT:g}; 0: none)",
        default=str(DEFAULT_TIMEOUT),
    )
    parser.addini(
        "vmfuzz_plugins",
        "vmfuzz plugins loaded before the corpus cases run, one per line (files relative to "
        "the ini file)",
        type="linelist",
        default=[],
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``--hypothesis-profile=vmfuzz-dev`` (``-ci``, ``-soak``): register vmfuzz's profiles
    before Hypothesis's plugin loads the one named (in its pytest_configure).  Only then:
    other runs import neither Hypothesis nor the model here."""
    name = config.getoption("hypothesis_profile", None)
    if isinstance(name, str) and name.startswith("vmfuzz-"):
        from vmfuzz.strategies.profiles import register_profiles

        register_profiles()


def corpus_dir(config: pytest.Config) -> Path:
    """The corpus folder this run collects cases from."""
    opt = config.getoption("vmfuzz_corpus")
    if opt:
        return (config.invocation_params.dir / opt).resolve()
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / str(config.getini("vmfuzz_corpus"))).resolve()


def plugin_specs(config: pytest.Config) -> list[str]:
    """The plugins this run loads before its cases: the ini option's, then the command line's
    (a file made absolute: relative to the ini file, or to the folder pytest started in)."""
    from vmfuzz.plugins import is_file_spec

    base = config.inipath.parent if config.inipath is not None else config.rootpath
    given = [(base, str(s)) for s in config.getini("vmfuzz_plugins")]
    given += [(config.invocation_params.dir, s) for s in config.getoption("vmfuzz_plugins")]
    return [str(folder / s) if is_file_spec(s) else s for folder, s in given]


def _load_plugins(config: pytest.Config) -> str | None:
    """Load the run's plugins once; None, or the one-line error every case then fails with."""
    if _PLUGINS_KEY not in config.stash:
        from vmfuzz.plugins import PluginError, load_plugins

        try:
            load_plugins(plugin_specs(config))
            config.stash[_PLUGINS_KEY] = None
        except PluginError as e:
            config.stash[_PLUGINS_KEY] = str(e)
    return config.stash[_PLUGINS_KEY]


def case_timeout(config: pytest.Config) -> float:
    """The run's time limit per case in seconds (0: none); a bad value is a usage error."""
    opt = config.getoption("vmfuzz_timeout")
    where, text = (("--vmfuzz-timeout", opt) if opt is not None
                   else ("vmfuzz_timeout", str(config.getini("vmfuzz_timeout"))))
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 86400):
        raise pytest.UsageError(f"{where}: expected seconds from 0 (no limit) to 86400, "
                                f"not {text[:40]!r}")
    return value


class CaseTimeout(BaseException):
    """A case ran past the per-case time limit (a BaseException, like KeyboardInterrupt: the
    replay's net for crashes of the model must not catch it)."""


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the running case after ``seconds`` of wall time (SIGALRM;
    without it, or off the main thread, there is no limit).  Any timer or handler that was set
    before is put back."""
    usable = (seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        # Raised where the case happens to be; if that is a place whose exceptions Python
        # ignores (a weakref callback, a __del__), the next tick raises it again.
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        raise CaseTimeout()

    old = signal.signal(signal.SIGALRM, expired)
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if old_timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *old_timer)


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    corpus = corpus_dir(config)
    config.stash[_CORPUS_KEY] = corpus
    config.stash[_TIMEOUT_KEY] = case_timeout(config)
    explicit_args = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit_args or not corpus.is_dir():
        return
    base = config.invocation_params.dir
    for arg in config.args:
        target = (base / arg.split("::", 1)[0]).resolve()
        if _within(corpus, target):
            return  # already collected through this path
    config.args.append(str(corpus))


def _in_corpus(path: Path, config: pytest.Config) -> bool:
    corpus = config.stash.get(_CORPUS_KEY, None)
    return corpus is not None and _within(path.resolve(), corpus)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".json" or file_path.name.startswith("."):
        return None
    if not _in_corpus(file_path, parent.config):
        return None
    return CorpusFile.from_parent(parent, path=file_path)


def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not _in_corpus(path, parent.config):
        return None
    return CorpusDir.from_parent(parent, path=path)


class CorpusDir(pytest.Directory):
    """A folder of the corpus, collected as pytest collects any folder, plus one failing item
    for each entry named like a case that cannot be read as one (pytest itself passes over
    FIFOs and dangling symlinks, and ``*.JSON`` is not ``*.json``)."""

    def collect(self) -> Iterable[pytest.Item | pytest.Collector]:
        from vmfuzz._casefiles import problem

        ihook = self.ihook
        for entry in sorted(self.path.iterdir()):
            init = self.session.isinitpath(entry, with_parents=True)
            if not init and ihook.pytest_ignore_collect(collection_path=entry, config=self.config):
                continue
            if entry.is_dir():
                col = ihook.pytest_collect_directory(path=entry, parent=self)
                if col is not None:
                    yield col
                continue
            why = problem(entry)
            if why is None:
                yield from ihook.pytest_collect_file(file_path=entry, parent=self)
            name = entry.name
            if name.startswith(".") or not name.lower().endswith(".json"):
                continue
            if why is None:
                if name.endswith(".json"):
                    continue
                why = (f"named {name[-5:]!r}: case files end in '.json' (lowercase); rename it "
                       "to have it collected")
            yield CorpusFile.from_parent(self, path=entry, problem=why)


class CorpusFile(pytest.File):
    """One corpus file: one item, named after the case (or a reported entry: ``problem``)."""

    def __init__(self, *args: Any, problem: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.problem = problem

    def collect(self) -> list[pytest.Item]:
        return [CorpusItem.from_parent(self, name=self.path.stem)]


class CaseDiffers(Exception):
    """The case did not show its recorded outcome (or cannot be read): the report text."""


class CorpusItem(pytest.Item):
    """Replays one corpus case."""

    def runtest(self) -> None:
        from vmfuzz.corpus import CorpusError, load, replay
        from vmfuzz.timeline import render_attempt

        problem = getattr(self.parent, "problem", None)
        if problem is not None:
            raise CaseDiffers(f"{self.path}: {problem}")
        failed = _load_plugins(self.config)
        if failed is not None:
            raise CaseDiffers(failed)
        limit = self.config.stash.get(_TIMEOUT_KEY, DEFAULT_TIMEOUT)
        try:
            with _time_limit(limit):
                cc = load(self.path)
                result = replay(cc, check_fix=False)
        except CorpusError as e:
            raise CaseDiffers(str(e)) from None
        except CaseTimeout:
            raise CaseDiffers(
                f"{self.path}: stopped after {limit:g} s, the time limit of one case "
                "(--vmfuzz-timeout or the vmfuzz_timeout ini option; 0: no limit)"
            ) from None
        if not result.ok:
            width = min(shutil.get_terminal_size((100, 24)).columns, 160)
            text = render_attempt(cc, result.attempt, width=width)
            raise CaseDiffers(f"{self.path}: {result.summary()}\n\n{text}")

    def repr_failure(
        self, excinfo: ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CaseDiffers):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"vmfuzz case {self.name}"
