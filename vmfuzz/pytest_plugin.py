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

The corpus is added to the run when pytest collects its default paths (plain ``pytest``, with
or without ``testpaths``); ``pytest corpus/`` or ``pytest corpus/some-case.json`` runs just
cases; ``pytest tests/`` runs no case.  ``-p no:vmfuzz`` turns the plugin off.

The plugin imports the corpus machinery only when a case runs, so a broken model never stops
pytest from starting.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

_CORPUS_KEY = pytest.StashKey[Path]()
_PLUGINS_KEY = pytest.StashKey["str | None"]()  # after loading: None, or the error line


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


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    corpus = corpus_dir(config)
    config.stash[_CORPUS_KEY] = corpus
    explicit_args = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit_args or not corpus.is_dir():
        return
    base = config.invocation_params.dir
    for arg in config.args:
        target = (base / arg.split("::", 1)[0]).resolve()
        if _within(corpus, target):
            return  # already collected through this path
    config.args.append(str(corpus))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".json" or file_path.name.startswith("."):
        return None
    corpus = parent.config.stash.get(_CORPUS_KEY, None)
    if corpus is None or not _within(file_path.resolve(), corpus):
        return None
    return CorpusFile.from_parent(parent, path=file_path)


class CorpusFile(pytest.File):
    """One corpus file: one item, named after the case."""

    def collect(self) -> list[pytest.Item]:
        return [CorpusItem.from_parent(self, name=self.path.stem)]


class CaseDiffers(Exception):
    """The case did not show its recorded outcome (or cannot be read): the report text."""


class CorpusItem(pytest.Item):
    """Replays one corpus case."""

    def runtest(self) -> None:
        from vmfuzz.corpus import CorpusError, load, replay
        from vmfuzz.timeline import render_attempt

        failed = _load_plugins(self.config)
        if failed is not None:
            raise CaseDiffers(failed)
        try:
            cc = load(self.path)
        except CorpusError as e:
            raise CaseDiffers(str(e)) from None
        result = replay(cc, check_fix=False)
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
