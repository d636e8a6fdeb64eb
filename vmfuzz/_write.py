"""Every file vmfuzz writes goes through here: atomic, with the user's umask, and faultable.

A file is written to a temporary file in the same folder and renamed over the old one, so a
reader (or a ``kill -9`` at any moment) sees the old content or the new, never half.  The
temporary file is created with mode ``0o666`` minus the umask, like any file a shell command
creates (``tempfile.mkstemp`` would make it ``0o600`` for good).

The fault hook: while the file named by ``VMFUZZ_WRITE_FAULT`` exists, every write in that
file's folder or below fails as a full disk does (``OSError`` ENOSPC; or the errno named in the
file, e.g. ``EROFS``).  Tests use it to fill a "disk" at a chosen moment of a run and to free it
again; it is read at every write, so a running process sees it come and go.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

FAULT_ENV = "VMFUZZ_WRITE_FAULT"


def check_fault(path: str | os.PathLike[str]) -> None:
    """Raise the injected fault if ``path`` lies below an active ``VMFUZZ_WRITE_FAULT`` flag."""
    flag = os.environ.get(FAULT_ENV)
    if not flag or not os.path.exists(flag):
        return
    root = os.path.dirname(os.path.abspath(flag))
    target = os.path.abspath(path)
    if os.path.commonpath([root, target]) != root:
        return
    try:
        name = Path(flag).read_text(encoding="utf-8").strip() or "ENOSPC"
    except OSError:
        name = "ENOSPC"
    code = getattr(errno, name, errno.ENOSPC)
    raise OSError(code, os.strerror(code), str(path))


def write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    p = Path(path)
    check_fault(p)
    _make_parent(p)
    while True:
        tmp = p.parent / f".{p.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno and e.filename is None:  # write(2): name it
            raise OSError(e.errno, e.strerror, str(p)) from e
        raise


def _make_parent(p: Path) -> None:
    """Create ``p``'s folder; a file in the way is ENOTDIR (mkdir says only "File exists")."""
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(p.parent)) \
            from None


def write_text(path: str | os.PathLike[str], text: str, *, fsync: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"), fsync=fsync)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` to ``path`` (a log: one JSON line per record; created if missing)."""
    p = Path(path)
    check_fault(p)
    _make_parent(p)
    try:
        with open(p, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        if e.errno and e.filename is None:
            raise OSError(e.errno, e.strerror, str(p)) from e
        raise


def probe_dir(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` unless files can be created in folder ``path``.

    An existing folder is tried for real (a file created and removed); a missing one is not
    created: the nearest existing folder above it must be writable.
    """
    p = Path(path).absolute()
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    if p.is_dir():
        write_bytes(p / ".vmfuzz-probe", b"", fsync=False)
        os.unlink(p / ".vmfuzz-probe")
        return
    check_fault(p)
    above = p.parent
    while not above.exists() and above != above.parent:
        above = above.parent
    if not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(above))
    if not os.access(above, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(above))
