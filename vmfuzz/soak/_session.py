"""Starting a soak session: on local worker processes, or on a Dask cluster."""

from __future__ import annotations

from typing import Any

from vmfuzz.soak._cluster import ClusterSoak
from vmfuzz.soak._config import SoakError, SoakOptions
from vmfuzz.soak._supervisor import EventHook, Soak, StatusHook


def run_soak(
    opts: SoakOptions,
    *,
    on_status: StatusHook | None = None,
    on_event: EventHook | None = None,
) -> dict[str, Any]:
    """Run one soak session (a new run, or ``opts.resume``); the summary as JSON data.

    Raises :class:`SoakError` for usage problems (nothing started then).  Workers are started
    with the ``spawn`` method: a script calling this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    if opts.workers < 1:
        raise SoakError("--workers must be >= 1")
    if opts.duration <= 0:
        raise SoakError("the duration must be positive")
    if opts.dask is not None:
        return ClusterSoak(opts, on_status=on_status, on_event=on_event).run()
    return Soak(opts, on_status=on_status, on_event=on_event).run()
