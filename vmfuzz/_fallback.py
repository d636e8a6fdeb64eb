"""Saving a failure when the corpus cannot be written: a finding is never lost.

:func:`save_case` saves to the corpus with :func:`vmfuzz.corpus.save_failure`; when that fails
with an ``OSError`` (a full disk, a read-only folder, ``--corpus`` naming a file) it saves the
same case, under the same name, to the first fallback folder that takes it:

1. ``$VMFUZZ_FALLBACK_DIR`` when set,
2. ``$XDG_STATE_HOME/vmfuzz/unsaved`` (default ``~/.local/state/vmfuzz/unsaved``),
3. ``<temp dir>/vmfuzz-unsaved-<uid>`` (another filesystem, often).

When no folder takes it either, :attr:`Saved.text` holds the case file's text for the caller
to print.  Callers say where the case went and exit with a status that says it is not in the
corpus (:data:`EXIT_NOT_IN_CORPUS` for ``vmfuzz fuzz`` and ``vmfuzz soak``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from vmfuzz._write import probe_dir
from vmfuzz.case import Case
from vmfuzz.corpus import CorpusWriteError, save_failure
from vmfuzz.violation import Violation

FALLBACK_ENV = "VMFUZZ_FALLBACK_DIR"
EXIT_NOT_IN_CORPUS = 4  # a failure was found but is not in the corpus (see Saved)


@attrs.frozen
class Saved:
    """Where a failure went: ``path`` (None: nowhere), and why not the corpus."""

    path: Path | None
    corpus_error: str | None = None  # the corpus could not be written: why (one line)
    text: str | None = None  # the case file's text, when no folder took it

    @property
    def in_corpus(self) -> bool:
        return self.corpus_error is None

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path) if self.path else None,
                "corpus_error": self.corpus_error, "fallback": not self.in_corpus}


def fallback_dirs() -> list[Path]:
    """The folders tried, in order, when the corpus cannot be written."""
    env = os.environ.get(FALLBACK_ENV)
    if env:
        return [Path(env)]
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return [Path(state) / "vmfuzz" / "unsaved",
            Path(tempfile.gettempdir()) / f"vmfuzz-unsaved-{uid}"]


def corpus_problem(corpus_dir: str | os.PathLike[str]) -> str | None:
    """Why a case could not be written to ``corpus_dir`` now (one line), or None if it can."""
    try:
        probe_dir(corpus_dir)
    except OSError as e:
        return f"{corpus_dir}: {e.strerror or e}"
    return None


def save_case(
    case: Case,
    violation: Violation,
    corpus_dir: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> Saved:
    """Save the failure to ``corpus_dir``, else to a fallback folder; never raises OSError.

    :class:`vmfuzz.corpus.NotReproducible` and ``ValueError`` pass through as from
    :func:`~vmfuzz.corpus.save_failure`.
    """
    try:
        return Saved(save_failure(case, violation, corpus_dir, metadata))
    except OSError as e:
        why = str(e) if isinstance(e, CorpusWriteError) else f"{corpus_dir}: {e.strerror or e}"
        text = e.text if isinstance(e, CorpusWriteError) else None
    for folder in fallback_dirs():
        try:
            return Saved(save_failure(case, violation, folder, metadata), why)
        except OSError as e:
            if isinstance(e, CorpusWriteError):
                text = e.text
    return Saved(None, why, text)
