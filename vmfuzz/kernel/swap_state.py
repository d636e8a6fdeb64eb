"""The swap cache (mm/swap_state.c): swap entry -> page, readahead, add_to_swap.

``k.swap.cache`` is swapper_space's radix tree (2.4: the page hash of swapper_space).  A cached
page has PG_swapcache, ``page.private`` = its entry, and holds one page reference and one
swap_map count for the cache.  Pages being read in sit in the cache locked (PG_locked) until
their I/O completes, so whoever finds them waits in lock_page before using the data.

Fixed kernel: 2.4.10+ / 2.6.18 shapes.  ``add_to_swap_cache`` = ``swap_duplicate`` + insert
under ``tree_lock`` that fails with -EEXIST if the entry already has a page (2.4.10
add_to_page_cache_unique, 2.6 radix_tree_insert), so the two contrary users of the cache —
read_swap_cache_async adding a *new page for an old entry*, try_to_swap_out / add_to_swap adding
an *old page for a new entry* — cannot both succeed.  read_swap_cache_async loops
find_get_page / alloc_page / add_to_swap_cache until one of them wins.

Historical bug switch (seed 001, Hugh Dickins and Andrea Arcangeli, 2001):
``read_swap_cache_async_unlocked_check`` restores 2.4.8: read_swap_cache_async takes its
swap_duplicate first and checks the cache *before* the (unlocked-check) add, and
add_to_swap_cache inserts without looking, so try_to_swap_out's get_swap_page ...
add_to_swap_cache is not atomic against swapin_readahead's valid_swaphandles + swap_duplicate:
two pages end up cached for one entry.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from vmfuzz.kernel import bugs
from vmfuzz.kernel.mm_types import PG_swapcache
from vmfuzz.kernel.page_alloc import alloc_page, get_page, lock_new_page, lru_cache_add, put_page
from vmfuzz.kernel.swapfile import (
    EEXIST,
    ENOENT,
    get_swap_page,
    inflight_dec,
    inflight_inc,
    page_swapcount,
    pinned,
    swap_device,
    swap_duplicate,
    swap_free,
    swap_info,
    swap_readpage,
    valid_swaphandles,
)

if TYPE_CHECKING:
    from vmfuzz.kernel.kernel import Kernel
    from vmfuzz.kernel.mm_types import Page, VmAreaStruct

Gen = Generator[Any, None, Any]

# page_cluster: swapin_readahead reads an aligned window of 1 << PAGE_CLUSTER slots.
PAGE_CLUSTER = 2

bugs.register(
    "read_swap_cache_async_unlocked_check",
    "001_7c293cf58bcd9bf3.txt",
    "2.4.8 read_swap_cache_async checks the swap cache before the add and add_to_swap_cache "
    "does not recheck: try_to_swap_out's get_swap_page..add_to_swap_cache races readahead's "
    "valid_swaphandles+swap_duplicate, two pages cached for one entry",
    "swap_cache_unique",
    mail_tasks=2,
    mail_preemptions=1,
    also=("data_integrity",),  # the other cached copy is mapped: a lost write
)


# --------------------------------------------------------------------------- the cache
def lookup_swap_cache(k: Kernel, e: int) -> Page | None:
    """lookup_swap_cache() / find_get_page(): the cached page of ``e`` with a reference.

    The cache lives in the device's address space (5.x swapper_spaces[type], freed by
    swapoff): callers either hold the device (get_swap_device, swapoff itself) or race."""
    swap_device(k)
    page = k.swap.cache.get(e)
    if page is not None:
        get_page(k, page)
    return page


def __add_to_swap_cache(k: Kernel, page: Page, e: int) -> int:
    """__add_to_swap_cache() (caller holds tree_lock and a swap_map count for the cache).

    -EEXIST if ``e`` already has a page or a swapin pin (radix_tree_insert).  The 2.4.8 add
    (bug ``read_swap_cache_async_unlocked_check``) hashed the page in without looking."""
    cache = k.swap.cache
    if (e in cache or e in pinned(k)) and not k.bug("read_swap_cache_async_unlocked_check"):
        return -EEXIST
    assert PG_swapcache not in page.flags, "add_to_swap_cache: BUG_ON(PageSwapCache(page))"
    cache[e] = page
    page.flags.add(PG_swapcache)
    page.private = e
    page.count += 1  # the cache's page reference
    k.touch_page(page)
    k.touch_entry(e)
    return 0


def add_to_swap_cache(k: Kernel, page: Page, e: int) -> Gen:
    """add_to_swap_cache() (2.4.10+ / 2.6.18): take a swap_map count for the cache and insert.

    The caller holds the page lock.  -ENOENT if ``e`` was freed meanwhile (swap_duplicate
    failed), -EEXIST if another page got there first.  The duplicate is in flight while the
    tree_lock is requested (2.6.18: radix_tree_preload may sleep there)."""
    k.sched.assert_held(page.lock, why="add_to_swap_cache: BUG_ON(!PageLocked(page))")
    if not swap_duplicate(k, e):
        return -ENOENT
    inflight_inc(k, e)
    si = swap_info(k)
    yield k.sched.spin_lock(si.tree_lock)
    err = __add_to_swap_cache(k, page, e)
    inflight_dec(k, e)
    if err:
        swap_free(k, e)
    k.sched.spin_unlock(si.tree_lock)
    return err


def __delete_from_swap_cache(k: Kernel, page: Page) -> None:
    """__delete_from_swap_cache(): remove ``page`` from the cache (tree_lock held: one step).

    The cache's swap_map count and page reference are the caller's to drop."""
    e = page.private
    assert e is not None and PG_swapcache in page.flags, "__delete_from_swap_cache: !PageSwapCache"
    if k.swap.cache.get(e) is page:
        del k.swap.cache[e]
    page.flags.discard(PG_swapcache)
    page.private = None
    k.touch_page(page)
    k.touch_entry(e)


def delete_from_swap_cache(k: Kernel, page: Page) -> None:
    """delete_from_swap_cache(): remove a locked page from the swap cache and drop the cache's
    swap_map count and page reference."""
    k.sched.assert_held(page.lock, why="delete_from_swap_cache: BUG_ON(!PageLocked(page))")
    e = page.private
    assert e is not None
    __delete_from_swap_cache(k, page)
    swap_free(k, e)
    put_page(k, page)


def try_to_free_swap(k: Kernel, page: Page) -> bool:
    """try_to_free_swap() (2.6.28; 2.4 remove_exclusive_swap_page): if nothing but the cache
    uses the page's swap entry, delete the page from the swap cache (freeing the entry).

    Caller holds the page lock.  This is do_swap_page's vm_swap_full() deletion."""
    k.sched.assert_held(page.lock, why="try_to_free_swap: VM_BUG_ON(!PageLocked(page))")
    if PG_swapcache not in page.flags:
        return False
    if page_swapcount(k, page):
        return False
    delete_from_swap_cache(k, page)
    return True


# --------------------------------------------------------------------------- reading in
def read_swap_cache_async(k: Kernel, e: int, vma: VmAreaStruct | None, addr: int) -> Gen:
    """read_swap_cache_async(): the page of swap entry ``e``, from the cache or read in.

    Returns the page with a reference held for the caller (unlocked: the read completed), or
    None if the entry was freed meanwhile or no memory.  Fixed: 2.4.10+ / 2.6.18 loop."""
    if k.bug("read_swap_cache_async_unlocked_check"):
        return (yield from _read_swap_cache_async_248(k, e))

    found: Page | None = None
    new: Page | None = None
    while True:
        found = lookup_swap_cache(k, e)
        if found is not None:
            break
        if new is None:
            new = yield from alloc_page(k)
            if new is None:
                break  # out of memory
        lock_new_page(k, new)
        err = yield from add_to_swap_cache(k, new, e)
        if err == 0:
            lru_cache_add(k, new)
            return (yield from _swap_readpage_locked(k, new, e))
        k.sched.unlock_page(new.lock)
        if err == -ENOENT:
            break  # the entry was freed since our caller saw it
        if e in pinned(k):
            # 2.6.32+: another swapin holds SWAP_HAS_CACHE without a cache page (the 4.15
            # skip-swapcache path): wait for it instead of spinning.
            yield k.sched.wait_event(lambda: e not in pinned(k), "swapcache_prepare")
    if new is not None:
        put_page(k, new)
    return found


def _swap_readpage_locked(k: Kernel, page: Page, e: int) -> Gen:
    """swap_readpage() into a locked swap-cache page; end_io unlocks it."""
    yield "read_swap_cache_async:swap_readpage"
    page.data = swap_readpage(k, e)
    k.touch_page(page)
    k.sched.unlock_page(page.lock)
    return page


def _read_swap_cache_async_248(k: Kernel, e: int) -> Gen:
    """2.4.8 read_swap_cache_async (bug ``read_swap_cache_async_unlocked_check``, seed 001).

    swap_duplicate first ("make sure the swap entry is still in use"), look in the cache,
    allocate, look again, then add_to_swap_cache: the checks are made outside the locking
    the add takes, and that add does not check again."""
    si = swap_info(k)
    # 2.4 swap_duplicate() counts the entry under swap_device_lock(p), the lock another CPU's
    # get_swap_page() holds while it hands a slot out: between the readahead (or the BKL)
    # and this count, try_to_swap_out elsewhere may take the entry (seed 001: "get_swap_page
    # gives entry just freed. swap_duplicate").
    yield k.sched.spin_lock(si.swap_lock, at="read_swap_cache_async")
    ok = swap_duplicate(k, e)
    k.sched.spin_unlock(si.swap_lock)
    if not ok:
        return None
    inflight_inc(k, e)  # account for the swap cache
    found = lookup_swap_cache(k, e)
    if found is not None:
        swap_free(k, e)
        inflight_dec(k, e)
        return found
    new = yield from alloc_page(k)
    if new is None:
        swap_free(k, e)
        inflight_dec(k, e)
        return None
    found = lookup_swap_cache(k, e)  # check the swap cache again, in case we stalled above
    if found is not None:
        put_page(k, new)
        swap_free(k, e)
        inflight_dec(k, e)
        return found
    yield "read_swap_cache_async:add_to_swap_cache"
    lock_new_page(k, new)
    yield k.sched.spin_lock(si.tree_lock)
    __add_to_swap_cache(k, new, e)  # 2.4.8: no -EEXIST
    inflight_dec(k, e)  # our duplicate is now the cache's count
    k.sched.spin_unlock(si.tree_lock)
    lru_cache_add(k, new)
    return (yield from _swap_readpage_locked(k, new, e))


def swapin_readahead(k: Kernel, e: int, vma: VmAreaStruct | None, addr: int) -> Gen:
    """swapin_readahead() (2.4 / 2.6.18): read the in-use slots of ``e``'s aligned window
    (valid_swaphandles) into the swap cache, dropping each page reference at once."""
    for off in valid_swaphandles(k, e):
        page = yield from read_swap_cache_async(k, off, vma, addr)
        if page is None:
            break
        put_page(k, page)


# --------------------------------------------------------------------------- swapping out
def add_to_swap(k: Kernel, page: Page) -> Gen:
    """add_to_swap() (2.6.18): give a locked anon page a swap entry and put it in the cache.

    get_swap_page's count becomes the cache's; -EEXIST ("raced with a speculative
    read_swap_cache_async") frees the entry and tries the next one.  False: no swap space."""
    k.sched.assert_held(page.lock, why="add_to_swap: BUG_ON(!PageLocked(page))")
    si = swap_info(k)
    while True:
        e = yield from get_swap_page(k)
        if not e:
            return False
        yield k.sched.spin_lock(si.tree_lock)
        err = __add_to_swap_cache(k, page, e)
        inflight_dec(k, e)
        if err:
            swap_free(k, e)
        k.sched.spin_unlock(si.tree_lock)
        if err == 0:
            return True
        if err != -EEXIST:
            return False
