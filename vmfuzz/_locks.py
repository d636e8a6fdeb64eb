"""The kernel's lock types as plain state; the scheduler grants, blocks and checks them.

A lock here never runs code of its own: tasks *request* it (``yield sched.spin_lock(l)``) and the
scheduler decides when the request is granted.  Each lock has a stable ``name`` ("mm1->mmap_sem")
for traces and a ``cls`` ("mmap_sem") for lockdep's class-order graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vmfuzz._scheduler import Task

READ = "r"
WRITE = "w"


class Lock:
    """Base: an exclusive lock with one owner.  ``sleeping`` locks may block a task in sleep."""

    kind = "lock"
    sleeping = False

    __slots__ = ("cls", "name", "owner")

    def __init__(self, name: str, cls: str | None = None) -> None:
        self.name = name
        self.cls = cls or name
        self.owner: Task | None = None

    def available(self, task: Task, mode: str) -> bool:
        return self.owner is None

    def grant(self, task: Task, mode: str) -> None:
        self.owner = task

    def release(self, task: Task, mode: str) -> bool:
        """Drop ``task``'s hold; False when ``task`` did not hold it."""
        if self.owner is not task:
            return False
        self.owner = None
        return True

    def holders(self) -> list[Task]:
        return [] if self.owner is None else [self.owner]

    def held_by(self, task: Task, mode: str | None = None) -> bool:
        return self.owner is task

    def __repr__(self) -> str:
        return f"<{self.kind} {self.name}>"


class Spinlock(Lock):
    """spinlock_t: never sleeps; a waiter spins (modelled as blocked, it makes no progress)."""

    kind = "spinlock"
    __slots__ = ()


class Mutex(Lock):
    """struct mutex / a binary struct semaphore: a sleeping exclusive lock."""

    kind = "mutex"
    sleeping = True
    __slots__ = ()


class PageLock(Lock):
    """PG_locked with its wait queue: lock_page() sleeps, trylock_page() does not."""

    kind = "page_lock"
    sleeping = True
    __slots__ = ()

    def __init__(self, name: str) -> None:
        super().__init__(name, "PG_locked")


class BigKernelLock(Lock):
    """lock_kernel(): recursive, dropped by schedule() when its holder sleeps, retaken on wake."""

    kind = "bkl"
    __slots__ = ("depth",)

    def __init__(self) -> None:
        super().__init__("kernel_flag", "BKL")
        self.depth = 0

    def available(self, task: Task, mode: str) -> bool:
        return self.owner is None or self.owner is task

    def grant(self, task: Task, mode: str) -> None:
        self.owner = task
        self.depth += 1

    def release(self, task: Task, mode: str) -> bool:
        if self.owner is not task:
            return False
        self.depth -= 1
        if self.depth == 0:
            self.owner = None
        return True


class RWSemaphore(Lock):
    """struct rw_semaphore: many readers or one writer; fair (a queued writer stops new readers)."""

    kind = "rwsem"
    sleeping = True
    __slots__ = ("readers", "waiting_writers")

    def __init__(self, name: str, cls: str | None = None) -> None:
        super().__init__(name, cls)
        self.readers: list[Task] = []
        self.waiting_writers = 0

    def available(self, task: Task, mode: str) -> bool:
        if mode == READ:
            return self.owner is None and self.waiting_writers == 0
        return self.owner is None and not self.readers

    def grant(self, task: Task, mode: str) -> None:
        if mode == READ:
            self.readers.append(task)
        else:
            self.owner = task

    def release(self, task: Task, mode: str) -> bool:
        if mode == READ:
            if task not in self.readers:
                return False
            self.readers.remove(task)
            return True
        return super().release(task, mode)

    def holders(self) -> list[Task]:
        return [self.owner] if self.owner is not None else list(self.readers)

    def held_by(self, task: Task, mode: str | None = None) -> bool:
        if mode == READ:
            return task in self.readers
        if mode == WRITE:
            return self.owner is task
        return self.owner is task or task in self.readers
