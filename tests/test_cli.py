"""The command line as a shell user meets it: a reader that goes away is not an error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    """``vmfuzz bugs | head -1``: head exits before vmfuzz writes; vmfuzz must stop with the
    shell's SIGPIPE status, not a traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "vmfuzz", "bugs"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before the interpreter has imported vmfuzz and written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_worker_defaults_count_the_cores_the_process_may_use(
    vmfuzz_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """A process pinned to one CPU (taskset, a container's cpuset) starts one worker, not one
    per CPU of the host: fuzz, soak and bench all count the CPU affinity."""
    import json
    import os

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")

    def pinned(*args: str) -> subprocess.CompletedProcess[str]:
        """``vmfuzz ARGS`` in a process that may run on CPU 0 only (as taskset -c 0 would)."""
        def pin() -> None:
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

        return vmfuzz_cli(*args, timeout=120, preexec_fn=pin)

    for cmd in ("soak", "bench"):
        out = pinned(cmd, "--help")
        assert out.returncode == 0, out.stderr
        assert "here 1)" in " ".join(out.stdout.split()), out.stdout
    out = pinned("fuzz", "--budget", "2ksteps", "--mutants", "0", "--json", "--no-save")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["workers"] == 1
