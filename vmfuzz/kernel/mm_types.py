"""The model's data structures, named as in include/linux/mm_types.h, rmap.h and swap.h.

Addresses are in pages: a vma covers virtual page numbers ``[vm_start, vm_end)``.  Page tables
map a page number to one of three pte kinds: :class:`PresentPte`, :class:`SwapPte`,
:class:`MigrationPte` (absent = pte_none).  Freed vmas and anon_vmas are *poisoned*: their class
is swapped for one whose every attribute access raises ``Violation("use_after_free")``, so a
stale pointer used by a racing path is caught at the use, with zero cost for live objects.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vmfuzz._locks import Mutex, PageLock, RWSemaphore, Spinlock
from vmfuzz.violation import Violation

# vm_flags (include/linux/mm.h)
VM_READ = 0x1
VM_WRITE = 0x2
VM_SHARED = 0x8
VM_GROWSDOWN = 0x100
VM_LOCKED = 0x2000
VM_RESERVED = 0x80000

# page flags (include/linux/page-flags.h)
PG_locked = "PG_locked"  # the bit is page.lock's owner; listed for messages only
PG_swapcache = "PG_swapcache"
PG_mlocked = "PG_mlocked"
PG_lru = "PG_lru"
PG_active = "PG_active"
PG_reserved = "PG_reserved"
PG_unevictable = "PG_unevictable"

SWAP_MAP_BAD = 0x3F  # mm/swapfile.c: a slot that is never allocated (slot 0 in the model)

# swap_info_struct->flags (include/linux/swap.h)
SWP_USED = 0x1
SWP_WRITEOK = 0x2
SWP_VALID = 0x4  # 5.1 eb085574a752: get_swap_device() may pin the device
SWP_SYNCHRONOUS_IO = 0x8  # 4.15: a zram-like device, swapin may skip the swap cache


# --------------------------------------------------------------------------- poisoning
class _Freed:
    """Mixin for poisoned objects: any attribute use is a use-after-free violation."""

    __slots__ = ()
    _what: ClassVar[str] = "object"

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_freed_desc", "_what"):
            return object.__getattribute__(self, name)
        raise Violation(
            "use_after_free",
            f"{object.__getattribute__(self, '_freed_desc')} used after free (.{name})",
            object=object.__getattribute__(self, "_freed_desc"),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        self.__getattribute__(name)


def poison(obj: Any, freed_cls: type, desc: str) -> None:
    """Free ``obj``: from now on any attribute access raises ``use_after_free``."""
    obj._freed_desc = desc
    object.__setattr__(obj, "__class__", freed_cls)


# --------------------------------------------------------------------------- ptes
class PresentPte:
    """A present pte: maps frame ``pfn``; ``write`` is the hardware write bit (COW clears it)."""

    __slots__ = ("pfn", "write")

    def __init__(self, pfn: int, write: bool) -> None:
        self.pfn = pfn
        self.write = write

    def __repr__(self) -> str:
        return f"pte(pfn={self.pfn}{',w' if self.write else ''})"


class SwapPte:
    """A non-present pte holding a swap entry (``swp_entry_to_pte``)."""

    __slots__ = ("entry",)

    def __init__(self, entry: int) -> None:
        self.entry = entry

    def __repr__(self) -> str:
        return f"swp(entry={self.entry})"


class MigrationPte:
    """A migration entry (swapops.h make_migration_entry): the page is being migrated."""

    __slots__ = ("pfn", "write")

    def __init__(self, pfn: int, write: bool) -> None:
        self.pfn = pfn
        self.write = write

    def __repr__(self) -> str:
        return f"migration(pfn={self.pfn})"


Pte = PresentPte | SwapPte | MigrationPte


def pte_same(a: Pte | None, b: Pte | None) -> bool:
    """pte_same(): the same pte value, kind and fields (an entry freed and reused compares
    equal: the ABA that pte_same cannot see)."""
    if a is None or b is None:
        return a is b
    if type(a) is not type(b):
        return False
    # (b is of a's type: the isinstance tests on b only tell mypy so)
    if isinstance(a, SwapPte):
        return isinstance(b, SwapPte) and a.entry == b.entry
    return not isinstance(b, SwapPte) and a.pfn == b.pfn and a.write == b.write


# --------------------------------------------------------------------------- struct page
class Page:
    """struct page.  ``mapcount`` counts present ptes (kernel: _mapcount + 1); ``count`` is the
    reference count (_count).  ``mapping`` is the anon_vma for an anon page; ``private`` the swap
    entry while PG_swapcache.  ``data`` is the user token the frame holds."""

    __slots__ = (
        "count",
        "data",
        "flags",
        "index",
        "lock",
        "mapcount",
        "mapping",
        "pfn",
        "private",
    )

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn
        self.lock = PageLock(f"page{pfn}")
        self.flags: set[str] = set()
        self.mapcount = 0
        self.count = 0
        self.mapping: AnonVma | None = None
        self.index = 0
        self.private: int | None = None
        self.data = 0

    @property
    def locked(self) -> bool:
        """PageLocked()."""
        return self.lock.owner is not None

    def __repr__(self) -> str:
        return f"page(pfn={self.pfn})"


# --------------------------------------------------------------------------- anon_vma
class AnonVma:
    """struct anon_vma (2.6.36): ``root`` is the oldest anon_vma of the fork family; its lock
    (``anon_vma->root->lock``) serialises the whole family.  ``head`` lists the chains
    (same_anon_vma) of every vma that may map pages of this anon_vma.  ``refcount`` is
    external_refcount: references held by migration while no vma may hold it."""

    __slots__ = ("_freed_desc", "head", "id", "lock", "refcount", "root")

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.lock = Spinlock(f"anon_vma{ident}->lock", "anon_vma->lock")
        self.root: AnonVma = self
        self.head: list[AnonVmaChain] = []
        self.refcount = 0

    def __repr__(self) -> str:
        return f"anon_vma{self.id}"


class FreedAnonVma(_Freed, AnonVma):
    __slots__ = ()
    _what = "anon_vma"


class AnonVmaChain:
    """struct anon_vma_chain: links one vma to one anon_vma (same_vma / same_anon_vma lists)."""

    __slots__ = ("anon_vma", "vma")

    def __init__(self, vma: VmAreaStruct, anon_vma: AnonVma) -> None:
        self.vma = vma
        self.anon_vma = anon_vma


# --------------------------------------------------------------------------- vma
class VmAreaStruct:
    """struct vm_area_struct: ``[vm_start, vm_end)`` in pages, ``vm_pgoff`` the page offset of
    vm_start in the anon linear space (or file), ``vm_next`` the sorted list link.
    ``anon_vma_chain`` lists this vma's chains, newest first; its *last* element links to the
    root anon_vma (as list_entry(vma->anon_vma_chain.prev) in the kernel)."""

    __slots__ = (
        "_freed_desc",
        "anon_vma",
        "anon_vma_chain",
        "id",
        "vm_end",
        "vm_file",
        "vm_flags",
        "vm_mm",
        "vm_next",
        "vm_ops",
        "vm_pgoff",
        "vm_start",
    )

    def __init__(
        self, ident: int, mm: MmStruct, start: int, end: int, pgoff: int, flags: int
    ) -> None:
        self.id = ident
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_pgoff = pgoff
        self.vm_flags = flags
        self.vm_next: VmAreaStruct | None = None
        self.anon_vma: AnonVma | None = None
        self.anon_vma_chain: list[AnonVmaChain] = []
        self.vm_ops: str | None = None  # name of a driver's vm_operations_struct
        self.vm_file: str | None = None

    def describe(self) -> str:
        return f"vma{self.id}[{self.vm_start},{self.vm_end}) of {self.vm_mm.name}"

    def __repr__(self) -> str:
        return self.describe()


class FreedVma(_Freed, VmAreaStruct):
    __slots__ = ()
    _what = "vma"


# --------------------------------------------------------------------------- mm_struct
class MmStruct:
    """struct mm_struct: the vma list (``mmap``, sorted by vm_start, linked by vm_next),
    ``map_count``, ``mmap_sem``, ``page_table_lock`` and the page table ``pgd``
    (page number -> pte).  ``users`` counts threads (mm_users)."""

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.name = f"mm{ident}"
        self.mmap: VmAreaStruct | None = None
        # find_vma's last result: consulted first, stored by every find_vma that walked, killed
        # by do_munmap's detach and moved to prev by __vma_unlink (mm/mmap.c, 2.2-3.14).
        self.mmap_cache: VmAreaStruct | None = None
        self.map_count = 0
        self.mmap_sem = RWSemaphore(f"{self.name}->mmap_sem", "mmap_sem")
        self.page_table_lock = Spinlock(f"{self.name}->page_table_lock", "page_table_lock")
        self.pgd: dict[int, Pte] = {}
        self.rss = 0
        self.users = 1
        self.dead = False
        self.swap_address = 0  # 2.4 swap_out: where the virtual scan resumes
        # No thread can make syscalls on it: its process is exiting (PF_EXITING), or it is a
        # fork child dup_mmap is still building (fork.mm_exiting / set_mm_exiting).
        self.exiting = False

    def vmas(self) -> list[VmAreaStruct]:
        """The vma list in order (a snapshot; racing walkers follow vm_next themselves)."""
        out = []
        vma = self.mmap
        while vma is not None:
            out.append(vma)
            vma = vma.vm_next
        return out

    def find_vma(self, addr: int) -> VmAreaStruct | None:
        """find_vma(): the first vma with vm_end > addr (it may start above addr): the cached
        vma if it covers addr, else a walk of the list whose result is cached."""
        vma = self.cached_vma(addr)
        if vma is None:
            vma = self.walk_vmas(addr)
            if vma is not None:
                self.mmap_cache = vma
        return vma

    def cached_vma(self, addr: int) -> VmAreaStruct | None:
        """find_vma's "check the cache first": ``mmap_cache`` if it covers addr (this reads the
        cached vma: a freed one is a use after free)."""
        vma = self.mmap_cache
        if vma is not None and vma.vm_end > addr and vma.vm_start <= addr:
            return vma
        return None

    def walk_vmas(self, addr: int) -> VmAreaStruct | None:
        """find_vma's search of the list (the rbtree in the kernel), without the cache."""
        vma = self.mmap
        while vma is not None:
            if vma.vm_end > addr:
                return vma
            vma = vma.vm_next
        return None

    def __repr__(self) -> str:
        return self.name


# --------------------------------------------------------------------------- swap
class SwapBackingDev:
    """The storage behind the swap area (swap_info_struct->swap_file / bdev).

    ``data[e]`` is the token slot ``e`` holds on disk (written by pageout / swap_writepage,
    read by swap_readpage).  ``generation`` counts swapons.  Freed (poisoned) by swapoff."""

    __slots__ = ("_freed_desc", "data", "generation")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.data: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"swapdev{self.generation}"


class FreedSwapBackingDev(_Freed, SwapBackingDev):
    __slots__ = ()
    _what: ClassVar[str] = "swap device"


class SwapInfo:
    """struct swap_info_struct for the one swap device: ``swap_map[offset]`` counts users of
    each slot (ptes + swap cache + in-flight references); slot 0 is SWAP_MAP_BAD as on a real
    device (the header page).  ``swap_lock`` guards the map; the swap cache maps entry ->
    page under ``tree_lock`` (swapper_space).  swapon/swapoff (mm/swapfile.c) change
    ``flags``, ``bdev`` and ``generation``."""

    def __init__(self, nslots: int) -> None:
        self.swap_map: list[int] = [0] * nslots
        if nslots:
            self.swap_map[0] = SWAP_MAP_BAD
        self.swap_lock = Spinlock("swap_lock")
        self.tree_lock = Spinlock("swapper_space.tree_lock", "tree_lock")
        self.cache: dict[int, Page] = {}
        self.enabled = nslots > 1  # SWP_WRITEOK, kept in step with flags by swapfile
        self.lowest_bit = 1
        # si->flags: SWP_* (an area of one slot, the header alone, is never swapped on)
        self.flags = (SWP_USED | SWP_WRITEOK | SWP_VALID) if self.enabled else 0
        self.users = 0  # si->users: get_swap_device() pins, waited for by swapoff
        self.bdev = SwapBackingDev(1)  # si->bdev / swap_file: the device behind the area
        self.generation = 1  # model only: bdev's generation, 1 + swapons so far
        # SWAP_HAS_CACHE set by swapcache_prepare() on an entry with no swap-cache page yet
        self.pinned: set[int] = set()


class Driver:
    """A device driver whose mapping has vm_ops (seed 000): ``lock`` is the driver's own sleeping
    lock that its ->swapout() takes and its ioctl path holds while allocating memory."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = Mutex(f"{name}.lock", "driver_lock")
        # What its ->swapout wrote, (mm id, page offset) -> token: the device's own storage.
        self.store: dict[tuple[int, int], int] = {}
