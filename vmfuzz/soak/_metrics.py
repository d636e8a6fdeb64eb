"""Process metrics of the workers from Linux /proc: resident memory and CPU time."""

from __future__ import annotations


def rss_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MB (``VmRSS`` of /proc/PID/status), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """Seconds process ``pid`` has spent on a CPU and waiting for one (runnable), or None.

    From /proc/PID/schedstat (Linux); a process that is on a CPU or waiting for one all the
    time is CPU-bound: on an idle machine it would keep a core busy.
    """
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return None
