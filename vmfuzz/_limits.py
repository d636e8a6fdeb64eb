"""Caps on every input: what one case file may ask for (sizes, tasks, operations, steps,
integers, bytes), and the counts the commands take (workers, seeds, examples).

A case within every cap loads in milliseconds and replays in bounded time and memory (the
largest kernel the caps allow boots in well under a second; a million-step run took 27 s of
CPU and 390 MB); a file beyond any cap is refused with one line naming the field, before
anything is built or run.  The caps lie far above anything the fuzzer draws or saves (three
mms of sixteen pages, a few tasks, 20,000 steps) and above ``KernelConfig.scaled(16)``.
``docs/corpus.md`` lists them; ``tests/test_input_zoo.py`` checks that list against this one.

Kept apart from the corpus and without imports of the model, so that the pytest plugin and the
commands can read them without loading the kernel.
"""

from __future__ import annotations

MAX_FILE_BYTES = 1 << 20  # a case file's size (saved cases are a few kilobytes)
MAX_INT_DIGITS = 100  # digits of any integer anywhere in the file, metadata included
MAX_INT = 2**63 - 1  # |value| of an integer the model uses: operation arguments, seeds
MAX_NR_MMS = 256
MAX_PAGES_PER_MM = 4096  # and boot_pages <= pages_per_mm
MAX_NR_FRAMES = 16384
MAX_NR_SWAP = 16384
MAX_TASKS = 64
MAX_OPS_PER_TASK = 10_000
MAX_TASK_NAME = 64  # characters of a task name
MAX_STEPS = 1_000_000  # max_steps, a task's start, a preemption's gap
MAX_SCHEDULE = 100_000  # decisions, preemption pairs or explicit steps
MAX_STEP_TEXT = 1000  # characters of one explicit step
MAX_PCT_DEPTH = 1000  # PCT's k is capped by MAX_STEPS
MAX_WIDTH = 1000  # columns of a drawing (--width)
MAX_WORKERS = 256  # processes of one command (--workers, zoo's -j): each holds a model
MAX_SEEDS = 10_000  # seeds of one zoo or bench run (--seeds)
MAX_EXAMPLES = 10**9  # fuzz --max-examples
MAX_MUTANTS = 10**6  # fuzz --mutants
MAX_VERIFY_SCHEDULES = 10**7  # verify --limit (the default 100,000 takes seconds to minutes)

# (field, cap) as docs/corpus.md lists them, in that order.
CAPS: tuple[tuple[str, str], ...] = (
    ("file size", f"{MAX_FILE_BYTES} bytes"),
    ("digits of any integer", str(MAX_INT_DIGITS)),
    ("operation arguments, seeds", f"|n| <= {MAX_INT}"),
    ("config.nr_mms", str(MAX_NR_MMS)),
    ("config.pages_per_mm", str(MAX_PAGES_PER_MM)),
    ("config.boot_pages", "config.pages_per_mm"),
    ("config.nr_frames", str(MAX_NR_FRAMES)),
    ("config.nr_swap", str(MAX_NR_SWAP)),
    ("tasks", str(MAX_TASKS)),
    ("tasks[i].ops", str(MAX_OPS_PER_TASK)),
    ("tasks[i].name", f"{MAX_TASK_NAME} characters"),
    ("max_steps, tasks[i].start, preemption gaps", str(MAX_STEPS)),
    ("schedule.decisions, .preemptions, .explicit", f"{MAX_SCHEDULE} entries"),
    ("schedule.explicit[i]", f"{MAX_STEP_TEXT} characters"),
    ("schedule.pct.depth", str(MAX_PCT_DEPTH)),
    ("schedule.pct.k", str(MAX_STEPS)),
)
