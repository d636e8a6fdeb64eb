"""Linus Torvalds' "always lock the deepest anon_vma" (LKML, 5 May 2010), as a vmfuzz plugin.

The seed mail, shared/seeds/003_53b3b15ba9e43027.txt, answers Mel's trylock-and-retry
(``mel_trylock_retry.py``): "the lock is per-anon_vma BUT you always lock the _deepest_
anon_vma you can find.  That means just a single lock."  Every same_anon_vma chain of a fork
family is rooted in the anon_vma that started it, so the root is found from any vma of the
family, "avc = list_entry(vma->anon_vma_chain.prev, struct anon_vma_chain, same_vma)", and from
a page through the first vma on its anon_vma's list.  One lock, no nesting, no retry.

One switch, ``linus_lock_root``, at the same three kernel functions as Mel's plugin, on the
same 2.6.34 kernel:

* ``anon_vma_lockptr``: 2.6.34's anon_vma lock is the anon_vma's own (``&anon_vma->lock``);
  it is what keeps an anon_vma's same_anon_vma list stable, which the lookup below relies on;
* ``rmap_walk`` (rmap_walk_anon): his lock_anon_vma_root(page): lock the page's anon_vma,
  find the root through the chains, drop the first lock, take the root's; walk the page's
  anon_vma list under it; unlock_anon_vma_root();
* ``lock_vma_anon_vmas`` (vma_adjust's locking): the root of the vma's chain, found as above.

The lookup needs the page's anon_vma lock to mean something.  In 2.6.36, where every anon_vma
lock is the root's, it protects nothing and the vma it reads can be freed under it: Rik van
Riel, implementing this idea, "we cannot do the 'lock dance' that Mel's earlier patches
implements and instead need a root pointer in the anon_vma" (5c341ee1dfc8, 012f18004da3: the
model's fixed kernel).  ``docs/your-patch.md`` shows the fuzzer finding that, too.

    vmfuzz fuzz --plugin examples/seed003/linus_lock_root.py --bug linus_lock_root

The switch is off unless named: the fixed kernel runs unchanged.
"""

from __future__ import annotations

from vmfuzz.kernel.rmap import SWAP_AGAIN, vma_address
from vmfuzz.plugins import switch
from vmfuzz.violation import Violation

BUG = "linus_lock_root"
SEED = "003_53b3b15ba9e43027.txt"
SUMMARY = (
    "Linus's proposal in seed 003, on 2.6.34's per-anon_vma locks: rmap_walk_anon and "
    "vma_adjust lock only the family's root anon_vma, found through the anon_vma_chain lists "
    "(the oldest chain of a vma); one lock, no nesting, no retry"
)


def _at(target: str):
    """``switch`` at ``target`` for this proposal's bug (one bug, three sites)."""
    return switch(target, bug=BUG, summary=SUMMARY, invariant="livelock", seed=SEED,
                  mail_tasks=2, zoo=False)


def _root_of(vma):
    """list_entry(vma->anon_vma_chain.prev, struct anon_vma_chain, same_vma)->anon_vma: the
    oldest chain of a vma (the model lists a vma's chains newest first, as list_add does)."""
    if not vma.anon_vma_chain:  # unlink_anon_vmas() freed them: .prev is a freed avc or the head
        raise Violation("use_after_free", f"{vma.describe()} has no anon_vma_chain left: "
                        "list_entry(vma->anon_vma_chain.prev) reads a freed anon_vma_chain")
    return vma.anon_vma_chain[-1].anon_vma


@_at("vmfuzz.kernel.rmap.anon_vma_lockptr")
def anon_vma_lockptr(k, anon_vma):
    """2.6.34 anon_vma_lock(): spin_lock(&anon_vma->lock), one lock per anon_vma."""
    return anon_vma.lock


def lock_anon_vma_root(k, page):
    """lock_anon_vma_root() from the mail: the page's root anon_vma, locked, or None.

    As written in the mail, the inner ``struct anon_vma *root;`` shadows the outer one and the
    early ``return ret`` has no ``ret``: "think of it as pseudo-code".  This is what it says it
    does.  rcu_read_lock() has no counterpart here: migration, the caller, holds a reference
    on the page's anon_vma, and a child anon_vma pins its root (76545066c852)."""
    anon_vma = page.mapping  # page_anon_vma(page)
    if anon_vma is None:
        return None
    # "Make sure the anon_vma 'same_anon_vma' list is stable!"
    yield k.sched.spin_lock(anon_vma.lock, at="lock_anon_vma_root")
    root = None
    if anon_vma.head:
        vma = anon_vma.head[0].vma  # list_first_entry(&anon_vma->head, ..., same_anon_vma)
        yield "lock_anon_vma_root:avc->vma"  # another CPU runs on: only our lock holds it
        root = _root_of(vma)
    if root is anon_vma:  # "We already locked it - anon_vma _was_ the root"
        return root
    k.sched.spin_unlock(anon_vma.lock)
    if root is not None:
        yield k.sched.spin_lock(root.lock, at="lock_anon_vma_root")
        return root
    return None  # no vma left on the list: nothing to walk


def unlock_anon_vma_root(k, root):
    """unlock_anon_vma_root(): spin_unlock(&root->lock); rcu_read_unlock()."""
    k.sched.spin_unlock(root.lock)


@_at("vmfuzz.kernel.rmap.rmap_walk")
def rmap_walk_anon(k, page, rmap_one):
    """rmap_walk_anon() under the root's lock alone: it excludes every vma_adjust of every vma
    that can map the page, whichever anon_vma of the family the page belongs to."""
    ret = SWAP_AGAIN
    anon_vma = page.mapping  # the page is locked: its anon_vma does not change
    root = yield from lock_anon_vma_root(k, page)
    if root is None:
        return ret
    for avc in list(anon_vma.head):
        vma = avc.vma
        address = vma_address(page, vma)
        if address is None:
            continue
        ret = yield from rmap_one(vma, address)
        if ret != SWAP_AGAIN:
            break
    unlock_anon_vma_root(k, root)
    return ret


@_at("vmfuzz.kernel.rmap.lock_vma_anon_vmas")
def lock_vma_anon_vmas(k, vma):
    """vma_adjust()'s anon_vma locking: "From the vma, it's simply" the oldest chain's
    anon_vma.  Returns the locks held."""
    root = _root_of(vma)
    yield k.sched.spin_lock(root.lock, at="vma_adjust")
    return [root.lock]
