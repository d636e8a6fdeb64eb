"""How many cores this process may use: the default number of worker processes.

``os.cpu_count()`` counts the machine's CPUs, but a process pinned by taskset or a container's
cpuset may run on fewer; starting a worker per host CPU there only oversubscribes the ones it
has.  So every command that starts a worker per core (fuzz, zoo, soak, bench) asks here.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
