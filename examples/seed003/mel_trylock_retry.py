"""Mel Gorman's trylock-and-retry anon_vma locking (2.6.34-rc), as a vmfuzz plugin.

The seed thread, shared/seeds/003_53b3b15ba9e43027.txt: Linus Torvalds, LKML, 5 May 2010, "Re:
[PATCH 1/2] mm,migration: Prevent rmap_walk_[anon|ksm] seeing the wrong VMA information".
Since anon_vma_chain (2.6.34) a page can be reached through several anon_vmas of one fork
family, each with its own lock.  Mel's patch has vma_adjust() take the anon_vma lock while it
rewrites vm_start/vm_pgoff, and rmap_walk_anon() hold the page's anon_vma lock and only
*trylock* the others, "a second lock cannot be spinned upon in case of deadlock": on
contention "locks are released and the operation is restarted".  Mel, in the seed mail: a mutex
"instead of the trylock-and-retry ... would avoid livelocking"; Linus, earlier that day: the
retry logic "actually opens us up to a possible livelock bug ... a lockstep situation".

One switch, ``mel_trylock_retry``, at three kernel functions:

* ``anon_vma_lockptr``: 2.6.34's anon_vma lock is the anon_vma's own (``&anon_vma->lock``),
  not the root's as in the model's fixed kernel (2.6.36);
* ``rmap_walk`` (rmap_walk_anon): the page's anon_vma lock, then for each vma whose own
  anon_vma is another, spin_trylock(&vma->anon_vma->lock) held across vma_address() and
  rmap_one() (as in Mel's patch posted on 27 April 2010); busy: drop, restart;
* ``lock_vma_anon_vmas`` (vma_adjust's locking): the vma's own anon_vma lock, then the rest of
  its anon_vma_chain by trylock, backing off and retrying the same way.  Mel's posted
  vma_adjust takes vma->anon_vma->lock alone; this locks the whole chain, the scheme with
  both sides following the patch's rule (``docs/your-patch.md`` says why the posted half
  alone cannot be judged here yet).

    vmfuzz fuzz --plugin examples/seed003/mel_trylock_retry.py --bug mel_trylock_retry

The switch is off unless named: the fixed kernel runs unchanged.
"""

from __future__ import annotations

from vmfuzz.kernel.rmap import SWAP_AGAIN, vma_address
from vmfuzz.plugins import switch

BUG = "mel_trylock_retry"
SEED = "003_53b3b15ba9e43027.txt"
SUMMARY = (
    "Mel's trylock-and-retry (2.6.34-rc, seed 003): per-anon_vma locks; rmap_walk_anon holds "
    "the page's anon_vma and trylocks each vma's own, vma_adjust holds its own and trylocks "
    "the rest of its chain; on contention both drop their locks and retry, in lock step"
)


def _at(target: str):
    """``switch`` at ``target`` for this proposal's bug (one bug, three sites)."""
    return switch(target, bug=BUG, summary=SUMMARY, invariant="livelock", seed=SEED,
                  mail_tasks=2)


def _rcu_lock(anon_vma):
    """``&vma->anon_vma->lock`` read under rcu_read_lock().  The walker holds only the page's
    anon_vma, and unlink_anon_vmas() frees a vma's own anon_vma before it takes the vma off the
    older ones' lists: it may be freed.  SLAB_DESTROY_BY_RCU keeps the memory an anon_vma, so
    its lock word is still a lock; the model poisons freed objects, so read it past the poison."""
    return object.__getattribute__(anon_vma, "lock")


def _back_off(k, held, busy, where):
    """Drop every anon_vma lock held and go round again.  The model runs one task at a time:
    a CPU spinning on the retry would keep the lock holder off the CPU it has on real
    hardware, so wait (cpu_relax) until the busy lock looks free, then restart."""
    yield f"{where}:trylock_failed"
    for lock in reversed(held):
        k.sched.spin_unlock(lock)
    yield k.sched.retry(f"{where}:retry")
    yield k.sched.wait_event(lambda: busy.owner is None, "anon_vma lock", at=where)


@_at("vmfuzz.kernel.rmap.anon_vma_lockptr")
def anon_vma_lockptr(k, anon_vma):
    """2.6.34 anon_vma_lock(): spin_lock(&anon_vma->lock), one lock per anon_vma."""
    return anon_vma.lock


@_at("vmfuzz.kernel.rmap.rmap_walk")
def rmap_walk_anon(k, page, rmap_one):
    """rmap_walk_anon() with Mel's retry (the caller, migration, holds a reference on the
    page's anon_vma)."""
    ret = SWAP_AGAIN
    anon_vma = page.mapping  # page_anon_vma(page)
    if anon_vma is None:
        return ret
    while True:  # retry:
        yield k.sched.spin_lock(anon_vma.lock, at="rmap_walk_anon")
        restart = False
        for avc in list(anon_vma.head):
            vma = avc.vma
            # "Guard against deadlocks by not spinning against vma->anon_vma->lock. On
            # contention release and retry"
            locked = None
            if vma.anon_vma is not anon_vma:
                locked = _rcu_lock(vma.anon_vma)
                yield "rmap_walk_anon:spin_trylock(vma->anon_vma->lock)"
                if not k.sched.trylock(locked):
                    yield from _back_off(k, [anon_vma.lock], locked, "rmap_walk_anon")
                    restart = True
                    break
            address = vma_address(page, vma)
            if address is not None:
                ret = yield from rmap_one(vma, address)
            if locked is not None:
                k.sched.spin_unlock(locked)
            if ret != SWAP_AGAIN:
                break
        if not restart:
            k.sched.spin_unlock(anon_vma.lock)
            return ret


@_at("vmfuzz.kernel.rmap.lock_vma_anon_vmas")
def lock_vma_anon_vmas(k, vma):
    """vma_adjust()'s anon_vma locking: the vma's own anon_vma lock, then every other anon_vma
    on its chain (newest to oldest, as vma->anon_vma_chain lists them) by trylock; on
    contention drop them all and retry.  Returns the locks held."""
    own = vma.anon_vma
    while True:
        yield k.sched.spin_lock(own.lock, at="vma_adjust")
        held = [own.lock]
        busy = None
        for avc in list(vma.anon_vma_chain):
            if avc.anon_vma is own:
                continue
            yield "vma_adjust:spin_trylock(avc->anon_vma->lock)"
            if not k.sched.trylock(avc.anon_vma.lock):
                busy = avc.anon_vma.lock
                break
            held.append(avc.anon_vma.lock)
        if busy is None:
            return held
        yield from _back_off(k, held, busy, "vma_adjust")
