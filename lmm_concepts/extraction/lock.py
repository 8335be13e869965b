"""One writer per store: an advisory lock file held for a whole extraction run.

`<store>/.lock` is locked with `flock` (released by the kernel when its holder exits, however it exits) and holds
the holder's pid, host and start time, so a refused run can say who holds it. A second run into the same folder is
refused at once. A lock file left by a holder that died (SIGKILL, power loss) is not locked by anyone: the next run
takes it over and logs whose it was. On release the file is removed while still locked; a run that opened the old
file meanwhile sees that the path no longer names it and tries again, so two runs never both hold it.

Under torchrun the ranks of one run share the lock: rank 0 holds it (see `extraction/distributed.py`).

On a filesystem (or platform) without `flock` the lock falls back to the file's record alone: a record from a live process on
this host, or from another host, refuses the run; one from a dead process on this host is taken over.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # no flock on this platform (Windows): the record alone decides, as on such filesystems
    fcntl = None

LOCK_FILE = ".lock"
log = logging.getLogger(__name__)

#: errors of `flock` on a filesystem that does not support it
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class StoreLockedError(RuntimeError):
    """Another run is writing the store (its holder is named in the message)."""


def _describe(record: dict) -> str:
    started = record.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}{when}"


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 4096):
        raw += chunk
    try:
        record = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"pid": "?", "host": "?"}
    return record if isinstance(record, dict) else {"pid": "?", "host": "?"}


def _alive(record: dict) -> bool:
    """Whether the record's holder may still run: True unless it is a process of this host that is gone."""
    if record.get("host") != socket.gethostname():
        return True  # cannot tell from here
    try:
        os.kill(int(record.get("pid")), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


class StoreLock:
    """The write lock of the store at `folder`: `acquire()` or `StoreLockedError`; `release()` (idempotent)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> StoreLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                got = self._try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if got:
                self._fd = fd
            else:
                os.close(fd)  # the holder removed the file between our open and lock: try the new one
        previous = _read(self._fd)
        if previous:
            log.warning(
                "%s: taking over the lock left by %s, which ended without releasing it; the store resumes from what "
                "it committed", self.folder, _describe(previous),
            )  # fmt: skip
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, json.dumps(record).encode())
        os.fsync(self._fd)
        return self

    def _try_lock(self, fd: int) -> bool:
        """Lock `fd`; False when the path no longer names the file locked (retry); raise when held elsewhere."""
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "flock is not available")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise self._busy(_read(fd)) from None
        except OSError as err:
            if err.errno not in _NO_FLOCK:
                raise
            record = _read(fd)  # no flock here: the record alone says whether a holder is alive
            if record and _alive(record) and record.get("pid") != os.getpid():
                raise self._busy(record) from None
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (opened.st_dev, opened.st_ino)

    def _busy(self, record: dict) -> StoreLockedError:
        return StoreLockedError(
            f"{self.folder} is being written by another extraction ({_describe(record)}; lock file {self.path}): "
            "wait for it to finish, or write to another --out folder. If no such run is active, delete the lock file."
        )

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # removed while still locked (see the module docstring)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
