"""What each system call promises to user space, checked from a record of the calls.

The other families compare the kernel's state with itself (a count with the ptes, a pte with
its vma).  A mistake that keeps the state self-consistent but breaks a call's contract (mprotect
returns and a page stays writable, munmap returns 0 and leaves the range mapped, fork's child
reads a zero page) is invisible to them, and so is one in code that also keeps the expected
values (``copy_page_range`` would fail to copy the expected view it fails to copy).  Here the
expectations come only from the calls the tasks made and what they returned (``k.calls``, kept
by the task bodies) and from what user loads and stores moved (``k.loaded``, ``k.stored``):

* ``mprotect_promise``: after mprotect(PROT_READ) returns 0, no pte of the range is writable
  (present or migration entry) and a store there faults; after mprotect(PROT_READ|PROT_WRITE)
  or mmap returns, a store there does not fault (SIGSEGV);
* ``munmap_promise``: after munmap returns 0, no pte of the range exists and a load or store
  there faults;
* ``mlock_promise``: after mlock returns 0, each page of the range (but a VM_RESERVED mapping's,
  which mlock leaves alone) is resident (a present pte, or a migration entry while the page
  moves) until a munlock, munmap, mmap, mprotect or exit of it begins;
* ``fork_promise``: the child reads, at each address, what the parent had stored there (or
  mmap's zeroes) when fork began, unless the parent stored there during the fork; later stores
  of either side stay private (a child's store makes the address its own);
* ``swapoff_promise``: after swapoff returns 0, until swapon begins, no pte and no swap-cache
  page refers to the swap area;
* ``enomem_promise``: a call whose only documented cause of -ENOMEM is memory it could not
  allocate (swapoff; a load's or store's fault: VM_FAULT_OOM) returns -ENOMEM only if a page
  allocation failed while it ran (the allocator's own count of failures, vmstat's
  ``pgalloc_fail``): an error the call's cause does not explain is a lost operation;
* ``einval_promise``: mmap, munmap and mprotect of a range of at least one page inside the
  address space never return -EINVAL (their man pages give no other cause);
* ``exit_promise`` (at rest): the address space of a process whose exit returned 0 is gone;
* ``load_promise``: a load reads what the last store to the address stored (mmap's zeroes if
  none, a fork child's inherited data is ``fork_promise``'s), when no store, mmap, munmap or
  exit of it was in flight: the program's own view of its memory, kept from the calls alone,
  where ``data_integrity`` reads the expected view the model's paths keep.

A promise starts when its call returns and ends when a call that may change the same address
begins: calls in flight at the same time are the user's race, not a broken promise.  The world a
run starts from was built by system calls too (``k.boot_calls``: the boot vmas' mmaps, the
stores, the fork, the munmap of a hole), one after another before the run: the spec starts from
what they promise, so a fork's child must read the pages the world swapped out.  Cost:
each step reads the calls begun or returned in it, and checks the watched addresses of the mms
it touched and the swap entries it touched (after a swapoff).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
from vmfuzz.invariants._registry import register, step_group, step_guard
from vmfuzz.invariants._view import _FREED, MAX_VMAS, vma_desc

from vmfuzz.kernel.mm_types import VM_LOCKED, VM_RESERVED, MigrationPte, PresentPte
from vmfuzz.violation import Violation

if TYPE_CHECKING:
    from vmfuzz.invariants._monitor import Monitor

EFAULT = -14
Addr = tuple[int, int]  # (mm id, virtual page)
BOOT_TID = -1  # the task id the world's calls are replayed as
ENOMEM = -12
EINVAL = -22
CHECKS = ("mprotect_promise", "munmap_promise", "mlock_promise", "fork_promise",
          "swapoff_promise", "load_promise", "enomem_promise", "einval_promise")
# Calls whose man page gives, for an anonymous MAP_FIXED range of at least one page, no cause
# of EINVAL but a range outside the address space (mmap(2), munmap(2), mprotect(2): "addr ...
# too large", "not a valid pointer"; the model's addresses are page-aligned).
_EINVAL_RANGE = frozenset({"mmap", "mmap_reserved", "mmap_driver", "munmap", "mprotect"})
# Calls whose man page gives no cause of ENOMEM but an allocation that failed: swapoff(2)
# ("insufficient memory"), and a fault (VM_FAULT_OOM).  mmap, mprotect, mlock and munmap also
# return it for a range that is not mapped or too many mappings, fork for an entry it cannot
# duplicate: those are not here.
_ENOMEM_ALLOC = frozenset({"swapoff", "read", "write"})
_MAPS = frozenset({"mmap", "mmap_reserved", "mmap_driver"})  # MAP_FIXED: replace the range


@attrs.define
class Spec:
    """What the calls returned so far promise, per (mm, page)."""

    seen: int = 0  # calls of ``k.calls`` read
    step: int = -1  # the monitor step ``found`` belongs to
    found: list[Violation] = attrs.Factory(list)
    # (mm, addr) -> begun calls that may change its contents / its mapping or protection
    content: dict[Addr, int] = attrs.Factory(dict)
    mapping: dict[Addr, int] = attrs.Factory(dict)
    stored: dict[Addr, int] = attrs.Factory(dict)  # what a load reads (last store, mmap: 0)
    inherited: dict[Addr, int] = attrs.Factory(dict)  # a fork child's stored, from its parent
    writable: dict[Addr, bool] = attrs.Factory(dict)
    unmapped: set[Addr] = attrs.Factory(set)
    locked: set[Addr] = attrs.Factory(set)
    # may be mapped by mmap_reserved (mlock leaves it alone): kept from the moment one begins
    # until a call that returned surely replaced it
    reserved: set[Addr] = attrs.Factory(set)
    # task id -> (op, args, {addr: (content, mapping) counts when it began}, extra)
    begun: dict[int, tuple[str, dict[str, int], dict[Addr, tuple[int, int]], object]] = (
        attrs.Factory(dict))
    # the lock state the user's calls left (mlock_state_promise): addresses a call locked, and
    # those a call unlocked (munlock, mmap, munmap; a fork child's); any other is unknown (no
    # call said, a race, a failed call)
    mlocked: set[Addr] = attrs.Factory(set)
    unlocked: set[Addr] = attrs.Factory(set)
    locking: dict[Addr, int] = attrs.Factory(dict)  # begun calls that may change it
    swap_off: bool = False
    # tid -> pgalloc_fail at the end of the step the call began in (alloc_page yields at
    # entry, so no allocation of the call can have failed yet)
    alloc_fails: dict[int, int] = attrs.Factory(dict)
    swapons: int = 0  # swapon calls begun
    watched: dict[int, set[int]] = attrs.Factory(dict)  # mm id -> addrs under a state promise


def _range(m: Monitor, mm: int, addr: int, npages: int) -> list[Addr]:
    top = m.k.config.pages_per_mm
    return [(mm, a) for a in range(max(addr, 0), min(addr + npages, top))]


def _span(m: Monitor, op: str, args: dict[str, int]) -> list[Addr]:
    """The addresses a call may change or depends on."""
    if "npages" in args:
        return _range(m, args["mm"], args["addr"], args["npages"])
    if op in ("read", "write"):
        return [(args["mm"], args["addr"])]
    if op in ("exit", "fork"):
        return _range(m, args["mm"], 0, m.k.config.pages_per_mm)
    return []


def _bump(d: dict[Addr, int], a: Addr) -> None:
    d[a] = d.get(a, 0) + 1


_CONTENT = _MAPS | {"munmap", "exit", "write"}  # calls that may change what a load reads
_MAPPING = _MAPS | {"munmap", "exit", "mprotect", "munlock"}  # ... its mapping or protection
_ANY = _CONTENT | _MAPPING
_LOCKING = _MAPS | {"munmap", "exit", "mlock", "munlock"}  # ... its VM_LOCKED
_NONE: frozenset[Addr] = frozenset()


def _busy(spec: Spec, tid: int, a: Addr, kinds: frozenset[str]) -> bool:
    """Another task's call of ``kinds`` that may change ``a`` is in flight (it may have begun
    before the returning call did, so the counts cannot tell)."""
    return any(other != tid and op in kinds and a in counts
               for other, (op, _args, counts, _extra) in spec.begun.items())


def _busy_set(spec: Spec, tid: int, kinds: frozenset[str]) -> set[Addr]:
    """Every address ``_busy`` holds for (one pass over the calls in flight, for a call whose
    span is many addresses: fork and exit span the whole mm)."""
    out: set[Addr] = set()
    for other, (op, _args, counts, _extra) in spec.begun.items():
        if other != tid and op in kinds:
            out.update(counts)
    return out


def _begin(m: Monitor, spec: Spec, tid: int, op: str, args: dict[str, int]) -> None:
    span = _span(m, op, args)
    extra: object = None
    if op in ("read", "write") and span:
        a = span[0]
        extra = (a in spec.unmapped, spec.writable.get(a), spec.inherited.get(a),
                 spec.stored.get(a))
    elif op == "fork":
        parent = args["mm"]
        extra = {a: t for a, t in spec.stored.items() if a[0] == parent}, {
            a for a in spec.reserved if a[0] == parent}
    if op in _MAPS or op in ("munmap", "exit"):
        for a in span:
            _bump(spec.content, a)
            _bump(spec.mapping, a)
            spec.stored.pop(a, None)
            spec.inherited.pop(a, None)
            spec.writable.pop(a, None)
            spec.unmapped.discard(a)
            spec.locked.discard(a)
        if op == "mmap_reserved":  # may be VM_RESERVED from now on, whoever wins
            spec.reserved.update(span)
    elif op == "write":
        for a in span:
            _bump(spec.content, a)
            spec.stored.pop(a, None)
            spec.inherited.pop(a, None)
    elif op in ("mprotect", "munlock"):
        for a in span:
            _bump(spec.mapping, a)
            spec.locked.discard(a)
            if op == "mprotect":
                spec.writable.pop(a, None)
    elif op == "swapon":
        spec.swap_off = False
        spec.swapons += 1
    elif op == "swapoff":
        busy = any(o == "swapon" for o, _a, _c, _e in spec.begun.values())
        extra = -1 if busy else spec.swapons
    if op in _ENOMEM_ALLOC:
        spec.alloc_fails[tid] = m.k.stats.get("pgalloc_fail", 0)
    if op in _LOCKING:
        racing = _busy_set(spec, tid, _LOCKING) if spec.begun else _NONE
        for a in span:
            _bump(spec.locking, a)
        # (-1: another such call was in flight when this one began: whichever finishes
        # last, their critical sections may have run in either order)
        extra = {a: -1 if a in racing else spec.locking[a] for a in span}
    # An address another call may be changing right now promises nothing to this one.
    in_flight = _busy_set(spec, tid, _ANY) if spec.begun else _NONE
    content, mapping = spec.content, spec.mapping
    counts = {a: (-1, -1) if a in in_flight else (content.get(a, 0), mapping.get(a, 0))
              for a in span}
    spec.begun[tid] = (op, args, counts, extra)


def _same(spec: Spec, counts: dict[Addr, tuple[int, int]], a: Addr, what: int) -> bool:
    """Nothing that may change ``a``'s contents (what 0) / mapping (1) began since."""
    now = spec.content.get(a, 0) if what == 0 else spec.mapping.get(a, 0)
    then = counts.get(a)
    return then is not None and then[what] == now


def _watch(spec: Spec, a: Addr) -> None:
    spec.watched.setdefault(a[0], set()).add(a[1])


def _v(check: str, a: Addr, msg: str, **objects: object) -> Violation:
    return Violation(check, msg, mm=f"mm{a[0]}", addr=a[1], **objects)


def _return(m: Monitor, spec: Spec, tid: int, ret: int,
            token: int | None = None) -> Violation | None:
    """Call ``tid`` returned ``ret`` (``token``: what a store stored, if not ``k.stored``'s)."""
    begun = spec.begun.pop(tid, None)
    if begun is None:
        return None

    op, args, counts, extra = begun
    k = m.k
    if ret == EINVAL and op in _EINVAL_RANGE and args["npages"] >= 1 and (
            0 <= args["addr"] and args["addr"] + args["npages"] <= k.config.pages_per_mm):
        return _v("einval_promise", (args["mm"], args["addr"]),
                  f"{op} of mm{args['mm']} pages [{args['addr']}, "
                  f"{args['addr'] + args['npages']}) returned -EINVAL, but the range lies "
                  f"inside the address space (pages 0-{k.config.pages_per_mm - 1}): an error "
                  "its cause does not explain")
    if op in _ENOMEM_ALLOC:
        fails = spec.alloc_fails.pop(tid, None)
        if ret == ENOMEM and k.stats.get("pgalloc_fail", 0) == fails:
            what = f"a {'store to' if op == 'write' else 'load of'} mm{args['mm']} page " \
                f"{args['addr']}" if "mm" in args else op
            msg = (f"{what} returned -ENOMEM, but no page allocation failed while it ran: "
                   "an error its cause does not explain")
            return (_v("enomem_promise", (args["mm"], args["addr"]), msg) if "mm" in args
                    else Violation("enomem_promise", msg))
    if op in _LOCKING:
        _lock_return(spec, tid, op, args, ret, extra)  # type: ignore[arg-type]
    if op in ("read", "write"):
        a = (args["mm"], args["addr"])
        assert isinstance(extra, tuple)
        was_unmapped, was_writable, want, last = extra
        mapped_same = _same(spec, counts, a, 1)
        where = f"mm{a[0]} page {a[1]}"
        if op == "write" and ret == 0 and _same(spec, counts, a, 0) and not _busy(
                spec, tid, a, _CONTENT):
            spec.stored[a] = k.stored.get(tid, 0) if token is None else token
        if ret == 0 and mapped_same and was_unmapped:
            return _v("munmap_promise", a, f"a {'store to' if op == 'write' else 'load of'} "
                      f"{where} succeeded after munmap of it returned 0: expected it to fault "
                      "(SIGSEGV)")
        if op == "write" and mapped_same and ret == 0 and was_writable is False:
            return _v("mprotect_promise", a, f"a store to {where} succeeded after "
                      "mprotect(PROT_READ) of it returned 0: expected it to fault (SIGSEGV)")
        if op == "write" and mapped_same and ret == EFAULT and was_writable is True:
            return _v("mprotect_promise", a, f"a store to {where} faulted (SIGSEGV) though a "
                      "call that returned mapped it writable and none changed it since")
        if op == "read" and ret == 0 and want is not None and _same(spec, counts, a, 0):
            got = k.loaded.get(tid)
            if got != want:
                return _v("fork_promise", a, f"mm{a[0]} reads token {got} at page {a[1]}, but "
                          f"its parent had token {want} there when fork began and neither side "
                          "stored there since: expected the child to read what the parent had",
                          expected=want, found=got)
        if op == "read" and ret == 0 and last is not None and _same(spec, counts, a, 0):
            got = k.loaded.get(tid)
            if got != last:
                what = "mmap's zeroes" if last == 0 else f"token {last}, its last store"
                return _v("load_promise", a, f"mm{a[0]} reads token {got} at page {a[1]}, but "
                          f"it holds {what}, and no store, mmap, munmap or exit of it began "
                          "since: expected a load to read what was last stored there",
                          expected=last, found=got)
        return None
    if op in _MAPS and ret == args["addr"]:
        busy = _busy_set(spec, tid, _ANY)
        for a in _range(m, args["mm"], args["addr"], args["npages"]):
            if _same(spec, counts, a, 1) and a not in busy:
                # A store that ran during the mmap may have landed in the new mapping (it is
                # populated before mmap returns): zeroes are promised only if none began.
                if _same(spec, counts, a, 0):
                    spec.stored[a] = 0
                if op != "mmap_driver":
                    spec.writable[a] = True
                if op != "mmap_reserved":
                    spec.reserved.discard(a)
    elif op in ("munmap", "mprotect", "mlock") and ret == 0:
        busy = _busy_set(spec, tid, _MAPPING)
        for a in _range(m, args["mm"], args["addr"], args["npages"]):
            if not _same(spec, counts, a, 1) or a in busy:
                continue
            if op == "munmap":
                spec.unmapped.add(a)
                spec.reserved.discard(a)
            elif op == "mprotect":
                spec.writable[a] = bool(args["flag"])
            elif a not in spec.reserved:
                spec.locked.add(a)
            _watch(spec, a)
        return _state_mm(m, spec, args["mm"])
    elif op == "fork" and ret >= 0:
        assert isinstance(extra, tuple)
        snap, reserved = extra
        busy = _busy_set(spec, tid, _CONTENT)
        for a, token in snap.items():
            if _same(spec, counts, a, 0) and a not in busy:
                spec.inherited[(ret, a[1])] = token
                spec.stored[(ret, a[1])] = token  # what a fork of the child passes on
        for a in reserved | {a for a in spec.reserved if a[0] == args["mm"]}:
            spec.reserved.add((ret, a[1]))  # whatever may be VM_RESERVED in the parent
        # fork(2): "memory locks are not inherited by a child" (unless a call aimed at the
        # child's id, which exists before fork returns, may have changed it meanwhile)
        racing = _busy_set(spec, tid, _LOCKING) if spec.begun else _NONE
        for a in _range(m, ret, 0, k.config.pages_per_mm):
            if a not in racing and not spec.locking.get(a):
                spec.unlocked.add(a)
    elif op == "swapoff" and ret == 0 and extra == spec.swapons:
        spec.swap_off = True
        for e in range(len(k.swap.swap_map)):
            v = _swap_entry(m, e)
            if v is not None:
                return v
    return None


def _lock_return(spec: Spec, tid: int, op: str, args: dict[str, int], ret: int,
                 began: dict[Addr, int]) -> None:
    """The lock state call ``tid`` left: mlock locks its range, munlock, mmap and munmap
    unlock theirs (exit's mm is gone), when it succeeded and no call that may change the
    same addresses was in flight when it began, began meanwhile or is still in flight;
    otherwise the state is unknown (a failed mlock may have locked part of the range)."""
    ok = (ret == args["addr"]) if op in _MAPS else (ret == 0)
    racing = _busy_set(spec, tid, _LOCKING) if spec.begun else _NONE
    for a, then in began.items():
        spec.mlocked.discard(a)
        spec.unlocked.discard(a)
        if not ok or then < 0 or a in racing or spec.locking.get(a, 0) != then or op == "exit":
            continue
        (spec.mlocked if op == "mlock" else spec.unlocked).add(a)


def _step(m: Monitor) -> list[Violation]:
    """This step's broken promises (computed once a step, whichever check asks first)."""
    k = m.k
    spec: Spec | None = m.promise_spec
    if spec is None:
        spec = m.promise_spec = _world_spec(m)
    step = m.steps  # the monitor's count of steps it ran
    if spec.step == step:
        return spec.found
    spec.step = step
    found: list[Violation] = []
    calls = k.calls
    if calls is not None and not m.full:
        n = len(calls)
        while spec.seen < n:
            tid, op, args, ret = calls[spec.seen]
            spec.seen += 1
            if ret is None:
                _begin(m, spec, tid, op, args)
            else:
                v = _return(m, spec, tid, ret)
                if v is not None:
                    found.append(v)
    if spec.watched:
        for mm_id in sorted(k.dirty_mms & spec.watched.keys()):
            v = _state_mm(m, spec, mm_id)
            if v is not None:
                found.append(v)
    spec.found = found
    return found


def _world_spec(m: Monitor) -> Spec:
    """The spec the run starts from: what the world's calls, run one after another before
    it, promised.  A return's own look at the state is not taken: the state is the built
    world's, not the one that call returned to; the run's steps check the promises.

    It depends on the world's calls and sizes only, so it is worked out once per world and
    copied for each run (every run of a campaign starts from the same few worlds)."""
    k = m.k
    key = (k.config.pages_per_mm, len(k.swap.swap_map),
           tuple((op, tuple(args.items()), ret, token) for op, args, ret, token in k.boot_calls))
    spec = _WORLD_SPECS.get(key)
    if spec is None:
        spec = Spec()
        for op, args, ret, token in k.boot_calls:
            _begin(m, spec, BOOT_TID, op, args)
            _return(m, spec, BOOT_TID, ret, token)
        # Only addresses under a promise stay watched (a return's look at the state may have
        # stopped at a violation before dropping the others; they never fire one).
        for mm_id in list(spec.watched):
            addrs = {a for a in spec.watched[mm_id] if _watched(spec, (mm_id, a))}
            if addrs:
                spec.watched[mm_id] = addrs
            else:
                del spec.watched[mm_id]
        if len(_WORLD_SPECS) >= 64:
            _WORLD_SPECS.pop(next(iter(_WORLD_SPECS)))
        _WORLD_SPECS[key] = spec
    return attrs.evolve(
        spec, found=list(spec.found), content=dict(spec.content), mapping=dict(spec.mapping),
        stored=dict(spec.stored), inherited=dict(spec.inherited), writable=dict(spec.writable),
        unmapped=set(spec.unmapped), locked=set(spec.locked), reserved=set(spec.reserved),
        mlocked=set(spec.mlocked), unlocked=set(spec.unlocked),
        locking=dict(spec.locking),
        begun=dict(spec.begun),
        watched={mm_id: set(addrs) for mm_id, addrs in spec.watched.items()},
    )


# (pages per mm, swap slots, the world's calls) -> the spec they promise (never handed out:
# each run gets a copy)
_WORLD_SPECS: dict[tuple[object, ...], Spec] = {}


# --------------------------------------------------------------------------- state checks
def _state_mm(m: Monitor, spec: Spec, mm_id: int) -> Violation | None:
    """The watched addresses of ``mm_id``: resident if locked, no pte if unmapped, no writable
    pte if read-only."""
    addrs = spec.watched.get(mm_id)
    mm = m.k.mms.get(mm_id)
    if not addrs or mm is None:
        return None
    pgd = mm.pgd
    for addr in sorted(addrs):
        a = (mm_id, addr)
        pte = pgd.get(addr)
        present = isinstance(pte, PresentPte | MigrationPte)
        if a in spec.locked and not present:
            return _v("mlock_promise", a, f"mm{mm_id} page {addr} is not resident "
                      f"({'no pte' if pte is None else repr(pte)}) though mlock of it returned "
                      "0 and no munlock, munmap, mmap, mprotect or exit of it began since: "
                      "expected a present pte (or a migration entry) until munlock")
        if a in spec.unmapped and pte is not None:
            return _v("munmap_promise", a, f"mm{mm_id} page {addr} has the pte {pte!r} though "
                      "munmap of it returned 0 and no mmap of it began since: expected nothing "
                      "mapped there")
        if spec.writable.get(a) is False and present and pte.write:  # type: ignore[union-attr]
            return _v("mprotect_promise", a, f"mm{mm_id} page {addr} has the writable pte "
                      f"{pte!r} though mprotect(PROT_READ) of it returned 0 and no call changed "
                      "it since: expected a read-only pte")
    for addr in [x for x in addrs if not _watched(spec, (mm_id, x))]:
        addrs.discard(addr)
    if not addrs:
        del spec.watched[mm_id]
    return None


def _lock_state_at_rest(m: Monitor) -> Violation | None:
    """With no task running: each vma of a live mm (but a VM_RESERVED one, which mlock leaves
    alone) has VM_LOCKED exactly on the addresses the user's calls left locked (unknown ones
    aside).  (Not: every PG_mlocked page mapped by a locked vma.  2.6.36 lets a race strand
    one, reclaim mlocking a page just after munlock cleared it, and frees it as such,
    counting UNEVICTABLE_MLOCKFREED.)"""
    k = m.k
    spec: Spec | None = m.promise_spec
    if spec is None:
        spec = m.promise_spec = _world_spec(m)
    # (a full scan reads no calls: it knows the world's, not the run's)
    for mm_id in () if m.full else sorted(k.mms):
        mm = k.mms[mm_id]
        if mm.dead or mm.users <= 0:
            continue
        vma = mm.mmap
        n = 0
        while vma is not None and type(vma) not in _FREED and n < MAX_VMAS:
            if not vma.vm_flags & VM_RESERVED:
                have = bool(vma.vm_flags & VM_LOCKED)
                for addr in range(vma.vm_start, vma.vm_end):
                    a = (mm_id, addr)
                    if a in spec.reserved or not (
                            a in spec.unlocked if have else a in spec.mlocked):
                        continue
                    why = ("a munlock, munmap, mmap or fork left it unlocked and no mlock of "
                           "it began since (mprotect keeps the lock state)"
                           if have else "mlock of it returned 0 and no munlock, munmap, mmap "
                           "or exit of it began since")
                    return _v("mlock_state_promise", a, f"every task finished, but "
                              f"{vma_desc(vma)} {'has' if have else 'lacks'} VM_LOCKED at page "
                              f"{addr} though {why}: expected VM_LOCKED exactly where the "
                              "user locked")
            vma = vma.vm_next
            n += 1
    return None


def _watched(spec: Spec, a: Addr) -> bool:
    return a in spec.locked or a in spec.unmapped or spec.writable.get(a) is False


def _swap_entry(m: Monitor, e: int) -> Violation | None:
    k = m.k
    users = k.swap_ptes.get(e)
    cached = k.swap.cache.get(e)
    if not users and cached is None:
        return None
    if users:
        what = "the pte at " + ", ".join(f"mm{u[0]} page {u[1]}" for u in sorted(users))
    else:
        what = f"the swap-cache page pfn {cached.pfn if cached is not None else '?'}"
    return Violation(
        "swapoff_promise",
        f"swap entry {e} is still referenced by {what} though swapoff returned 0 and no swapon "
        "began since: expected every swapped page brought back in",
        entry=e,
    )


def _active(m: Monitor) -> bool:
    """Whether ``_step`` may find a broken promise this step: a call began or returned since
    it last read them, or the step touched an mm with watched addresses."""
    k = m.k
    calls = k.calls
    spec: Spec | None = m.promise_spec
    if spec is None:
        return bool(calls)
    if calls is not None and spec.seen < len(calls):
        return True
    return bool(spec.watched) and not k.dirty_mms.isdisjoint(spec.watched)


def _found(m: Monitor) -> list[Violation]:
    """This step's broken promises (worked out by the first of the hooks that asks)."""
    spec: Spec | None = m.promise_spec
    return spec.found if spec is not None and spec.step == m.steps else _step(m)


def _hook(name: str) -> Callable[[Monitor], Violation | None]:
    @step_guard(_active)
    @step_group(_found)
    def each_step(m: Monitor) -> Violation | None:
        for v in _found(m):
            if v.check == name:
                return v
        return None

    each_step.__qualname__ = f"{name}.each_step"
    return each_step


def _swap_entry_hook(m: Monitor, e: int) -> Violation | None:
    spec: Spec | None = m.promise_spec
    if spec is None or not spec.swap_off:
        return None
    return _swap_entry(m, e)


_DOCS = {
    "mprotect_promise": (
        "after mprotect(PROT_READ) returns, no pte of the range is writable and stores fault; "
        "after mprotect(PROT_WRITE) or mmap, stores do not",
        "mprotect(2): 'changes the access protections for the calling process's memory pages'; "
        "mm/mprotect.c change_protection()",
    ),
    "munmap_promise": (
        "after munmap returns 0, nothing is mapped in the range and loads and stores fault",
        "munmap(2): 'further references to addresses within the range generate invalid "
        "memory references'",
    ),
    "mlock_promise": (
        "after mlock returns 0, each page of the range stays resident until munlock (or "
        "munmap, mmap, mprotect, exit) begins",
        "mlock(2): 'pages ... are guaranteed to be resident in RAM when the call returns "
        "successfully; ... will stay in RAM until later unlocked'",
    ),
    "fork_promise": (
        "fork's child reads what the parent had stored when fork began; later stores stay "
        "private",
        "fork(2): 'the child process and the parent process run in separate memory spaces ... "
        "at the time of fork() both memory spaces have the same content'",
    ),
    "load_promise": (
        "a load reads what the last store there stored (mmap's zeroes if none), whatever "
        "reclaim, swap and migration did meanwhile",
        "mmap(2): an anonymous mapping is 'initialized to zero'; the memory model every "
        "program relies on: a load returns the last store (swap and migration are invisible)",
    ),
    "swapoff_promise": (
        "after swapoff returns 0, no pte and no swap-cache page refers to the swap area",
        "swapoff(2); mm/swapfile.c try_to_unuse(): every entry unused before swapoff returns",
    ),
    "einval_promise": (
        "mmap, munmap and mprotect of a range inside the address space do not return -EINVAL",
        "mmap(2)/munmap(2)/mprotect(2) EINVAL: an address or length too large or not aligned; "
        "a range inside TASK_SIZE is not a cause",
    ),
    "enomem_promise": (
        "swapoff, a load or a store returns -ENOMEM only if a page allocation failed while it "
        "ran",
        "swapoff(2) ENOMEM: 'insufficient memory'; a fault's VM_FAULT_OOM; vmstat "
        "pgalloc_fail and the allocation-failure warning",
    ),
}

def _exit_at_rest(m: Monitor) -> Violation | None:
    """With no task running, the address space of every process whose exit returned 0 is
    gone: no vma, no pte, no rss, no user (the last mmput ran exit_mmap)."""
    k = m.k
    calls = k.calls
    if not calls or m.full:
        return None
    for mm_id in sorted({args["mm"] for _tid, op, args, ret in calls
                         if op == "exit" and ret == 0}):
        mm = k.mms.get(mm_id)
        if mm is None:
            continue
        left = [what for what, n in (("user", mm.users), ("pte", len(mm.pgd)),
                                      ("page counted in rss", mm.rss)) if n > 0]
        if mm.mmap is not None:
            left.insert(0, "vma")
        if left:
            return Violation(
                "exit_promise",
                f"every task finished and exit of {mm.name} returned 0, but its address space "
                f"still has a {', a '.join(left)} ({mm.users} users): expected it torn down "
                "(a reference never put keeps its memory and swap for good)", mm=mm.name)
    return None


register(
    "exit_promise", "promises",
    "with no task running, the address space of a process whose exit returned is gone",
    "_exit(2)/POSIX: 'memory mappings ... shall be unmapped'; kernel/fork.c mmput(): the last "
    "user runs exit_mmap()",
    at_rest=_exit_at_rest,
)

register(
    "mlock_state_promise", "promises",
    "with no task running, VM_LOCKED is set exactly where the user's calls left memory locked",
    "mlock(2)/munlock(2); fork(2): 'memory locks are not inherited by a child'; /proc/PID/"
    "status VmLck and smaps' Locked: what the process locked",
    at_rest=_lock_state_at_rest,
)

for _name in CHECKS:
    _doc, _mirrors = _DOCS[_name]
    register(
        _name, "promises", _doc, _mirrors, each_step=_hook(_name),
        entry=_swap_entry_hook if _name == "swapoff_promise" else None,
    )
