"""The kernel model: mm state and kernel paths as scheduler tasks (no Hypothesis here).

Importing this package registers every operation in :data:`vmfuzz.kernel.ops.OPS`.
Module names follow the kernel's mm/*.c files; docs/model.md maps each path to its source.
"""

from vmfuzz.kernel import (  # noqa: F401  (imported to register their operations)
    fork,
    memory,
    migrate,
    mlock,
    mmap,
    page_alloc,
    rmap,
    swap_state,
    swapfile,
    swapin,
    vmscan,
)
from vmfuzz.kernel.bugs import BUGS, Bug
from vmfuzz.kernel.config import KernelConfig
from vmfuzz.kernel.kernel import Kernel
from vmfuzz.kernel.ops import OPS, OpSpec

__all__ = ["BUGS", "OPS", "Bug", "Kernel", "KernelConfig", "OpSpec"]
