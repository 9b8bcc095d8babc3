"""Writing outputs so that a reader never sees half of a run.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` — one file: write to a temporary file in
  the same folder, fsync, rename over the target (POSIX rename is atomic).
* :func:`publish_directory` — a whole output folder at once: every file of a run is written into
  a staging folder beside the target, then the two folders are swapped. On Linux the swap is one
  ``renameat2(RENAME_EXCHANGE)`` system call, so readers see the old folder or the new one, never
  a mixture; elsewhere the old folder is renamed aside first and restored by the next run if the
  process dies between the two renames.
* :class:`OutputLock` — an exclusive ``flock`` on ``<target>.lock`` so that two runs cannot write
  into the same folder at once; the second gets :class:`OutputBusyError` naming the holder.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from fundguard.models.errors import FundguardError

__all__ = [
    "OutputBusyError",
    "OutputLock",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_safe",
    "package_versions",
    "publish_directory",
    "sha256_file",
    "staged_output",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


class OutputBusyError(FundguardError):
    """Another run holds the lock of the output folder."""


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it,
    which would race with other threads); 0o022 where /proc is not available."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename).

    The file gets the permissions a plain ``open(path, "w")`` would give (0o666 less the umask),
    not the private 0o600 of a temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


class OutputLock:
    """Exclusive, non-blocking lock on ``<target>.lock`` for the life of a ``with`` block.

    The lock is an ``flock``: the kernel releases it when the process dies, so a killed run never
    leaves a stale lock behind.
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        self.path = self.target.with_name(self.target.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputBusyError(
                    f"output folder {str(self.target)!r} is being written by another run (pid {holder}); "
                    "wait for it or choose another --out"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def publish_directory(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Replace folder ``target`` by folder ``staging`` (same parent folder) in one step.

    Returns the target path. The previous contents of ``target`` are deleted afterwards.
    """
    staging, target = Path(staging), Path(target)
    _recover(target)
    if not target.exists():
        os.rename(staging, target)
        return target
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous outputs
        return target
    aside = target.with_name(f".{target.name}.previous")
    shutil.rmtree(aside, ignore_errors=True)
    os.rename(target, aside)
    os.rename(staging, target)
    shutil.rmtree(aside, ignore_errors=True)
    return target


@contextlib.contextmanager
def staged_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Lock ``target``, yield an empty staging folder beside it, publish it on success.

    On an exception (or a signal that unwinds the stack) the staging folder is removed and
    ``target`` keeps its previous complete contents.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with OutputLock(target):
        _recover(target)
        for stale in target.parent.glob(f".{target.name}.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed run; we hold the lock
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))
        try:
            staging.chmod(0o777 & ~_umask())  # the published folder: as mkdir would make it, not 0o700
            yield staging
            _fsync_tree(staging)
            publish_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, hex (recorded with every input file so a run can be traced)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions(packages: tuple[str, ...] = ("fundguard", "numpy", "scipy", "pandas", "arch", "cvxpy")
                     ) -> dict[str, str]:
    """Installed versions of ``packages`` ("unknown" when not installed as a distribution)."""
    out = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "unknown"
    return out


def json_safe(value: Any) -> Any:
    """``value`` as strict JSON data: numpy scalars and arrays to Python, non-finite floats to None."""
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def _recover(target: Path) -> None:
    # A run killed between the two renames of the fallback path left the old outputs aside.
    aside = target.with_name(f".{target.name}.previous")
    if aside.exists() and not target.exists():
        os.rename(aside, target)


def _exchange(a: Path, b: Path) -> bool:
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
