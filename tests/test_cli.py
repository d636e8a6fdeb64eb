"""The command line as a shell user meets it: a reader that goes away is not an error."""

from __future__ import annotations

import subprocess
import sys


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
