"""The ``vmfuzz`` command: one subcommand per module (``vmfuzz/_cmd_*.py``), registered here.

Exit codes everywhere: 0 success/nothing found, 1 a failure was found, 2 usage or bad input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from vmfuzz import __version__

# (subcommand, module, one-line help).  Each module defines add_arguments(p) and run(args) -> int.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("fuzz", "vmfuzz._cmd_fuzz", "fuzz the kernel model (operations + schedules)"),
    ("bugs", "vmfuzz._cmd_bugs", "list the historical bugs the model can re-create"),
    ("zoo", "vmfuzz._cmd_zoo", "check every historical bug is rediscovered over many seeds"),
    ("bench", "vmfuzz._cmd_bench", "measure engine/model speed and bug-finding power"),
    ("replay", "vmfuzz._cmd_replay", "replay corpus cases and check their recorded outcomes"),
    ("verify", "vmfuzz._cmd_verify", "run a case's program under every schedule with at most N "
     "preemptions, bug kernel and fixed kernel"),
    ("show", "vmfuzz._cmd_show", "draw a corpus case as a race diagram (one column per task)"),
    ("invariants", "vmfuzz._cmd_invariants", "list the invariant checks and what each mirrors"),
    ("soak", "vmfuzz._cmd_soak", "fuzz on every core for hours; resumable; morning report"),
    ("report", "vmfuzz._cmd_report", "print a soak run's morning summary again (+ HTML report)"),
]

DESCRIPTION = """\
Property-based fuzzing of the Linux VM subsystem's concurrency.

Hypothesis generates operation sequences (mmap, munmap, fork, faults, reclaim, migration,
swapoff ...) and thread schedules against a deterministic model of the kernel's mm, checking
invariants after every scheduler step.  Minimal failures are saved to a JSON corpus and replayed.
"""

EPILOG = """\
Every command takes --plugin NAME (repeatable): a .py file, an installed plugin (entry point
group vmfuzz.plugins; installed plugins load only when named) or a module, loaded before the
command runs, to add operations, bug switches, checks or world features.  A case saved with a
plugin's names records the plugin; replay, show and pytest load it again by themselves.

exit status: 0 ok / nothing found, 1 failure found, 2 usage or bad input.
Run 'vmfuzz COMMAND --help' for each command's options."""

PLUGIN_HELP = (
    "load a plugin first: a .py file, an installed plugin (entry point group vmfuzz.plugins) or "
    "a module, adding operations, bug switches, checks or world features (repeatable; "
    "docs/plugins.md)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, exit 2, no usage dump
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vmfuzz",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vmfuzz {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module, help_text in SUBCOMMANDS:
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name,
            help=help_text,
            description=(mod.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.add_argument("--plugin", action="append", default=[], metavar="NAME", help=PLUGIN_HELP)
        p.set_defaults(_module=mod)
    return parser


def load_plugins(command: str, specs: Sequence[str]) -> int | None:
    """Load the command's ``--plugin``s; an error is one line on stderr and exit status 2."""
    if not specs:
        return None
    from vmfuzz.plugins import PluginError
    from vmfuzz.plugins import load_plugins as load

    try:
        load(specs)
    except PluginError as e:
        sys.stderr.write(f"vmfuzz {command}: error: {e}\n")
        return 2
    return None


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # A file name or a case's text that is not valid Unicode is printed escaped, never a
        # traceback (stdout is strict by default).
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        failed = load_plugins(args.command, args.plugin)
        if failed is not None:
            return failed
        return int(args._module.run(args))
    except KeyboardInterrupt:
        sys.stderr.write("vmfuzz: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away ('vmfuzz bugs | head'): stop quietly
        # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it


if __name__ == "__main__":
    raise SystemExit(main())
