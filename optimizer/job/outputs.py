"""Writing outputs so that a reader never sees half of a run, and no run touches what it did not write.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` — one file: write to a temporary file in
  the same folder, fsync, rename over the target (POSIX rename is atomic).
* :func:`staged_output` / :func:`publish_directory` — a whole output folder at once: every file of
  a run is written into a staging folder beside the target, then the two folders are swapped. On
  Linux the swap is one ``renameat2(RENAME_EXCHANGE)`` system call, so readers see the old folder
  or the new one, never a mixture; elsewhere the old folder is renamed aside first and restored by
  the next run if the process dies between the two renames.
* :class:`OutputLock` — an exclusive ``flock`` on ``<target>.lock`` so that two runs cannot write
  into the same folder at once; the second gets :class:`OutputBusyError` naming the holder.

Where a run may publish (:func:`check_output_folder`): a path that does not exist, an empty
folder, or a folder a previous run published. A published folder carries the marker
``.fundguard-output`` (JSON: schema, run id, and the SHA-256 of every file the run wrote); a
folder counts as a previous run's only if it holds the marker and nothing else than the files the
marker lists, unchanged. Anything else — a folder with files fundguard did not write, a regular
file, a symbolic link, the root — is refused with :class:`OutputPlaceError` naming it and why,
and nothing is created, moved or removed. A run removes only the staging folder it made itself
and the files a marker proves fundguard wrote; a staging folder beside the target that this run
did not make (say, of a killed run) is left alone.

A target that cannot be renamed — a mount point (the ``docker -v host:/out`` layout) or the
folder the process runs in — is published *inside*: files are staged in a hidden folder within
it, the marker is rewritten to own both the old and the new files, then each file is renamed
into place and the old files the new run does not have are removed. Each file is replaced
atomically, the set of files is not: a reader may see old and new files side by side for the
milliseconds of the swap, and a run killed during it leaves a folder the next run recognises
(its marker has a ``replacing`` entry) and publishes over.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


from fundguard.models.errors import FundguardError
from fundguard.models.serial import json_safe  # re-exported: the one sanitizer lives in models

__all__ = [
    "MARKER",
    "OutputBusyError",
    "OutputLock",
    "OutputPlaceError",
    "OutputWriteError",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "check_output_folder",
    "json_safe",
    "output_write_error",
    "package_versions",
    "publish_directory",
    "sha256_file",
    "staged_output",
]

#: The file a published folder carries to say which files a fundguard run wrote into it.
MARKER = ".fundguard-output"
_MARKER_SCHEMA = "fundguard-output/1"
#: The lock of a folder published in place (a mount point): inside it, not beside it, because
#: the folder above a mount point is often not writable (a container's root).
_INNER_LOCK = ".fundguard.lock"
_LOCK_SIGNATURE = b"fundguard lock"
_STAGING_RESERVE = 8  # the random characters tempfile.mkdtemp appends to a staging folder's name
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
logger = logging.getLogger("fundguard")


class OutputBusyError(FundguardError):
    """Another run holds the lock of the output folder."""


class OutputPlaceError(FundguardError, ValueError):
    """An output place fundguard will not publish into (it holds files fundguard did not write,
    it is a file, a link or the root) or cannot (under a regular file, a name too long)."""


class OutputWriteError(FundguardError, OSError):
    """The operating system refused to write the outputs (read-only, full disk, file-size limit,
    no permission); the previous outputs are kept. ``errno`` is the system's error number."""


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
    fd, tmp = tempfile.mkstemp(prefix=_side_name(path.name, ".", ".", reserve=_STAGING_RESERVE + 4),
                               suffix=".tmp", dir=path.parent)
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
    """Exclusive, non-blocking lock on ``<target>.lock`` (or ``path``) for the life of a ``with`` block.

    The lock is an ``flock``: the kernel releases it when the process dies, so a killed run never
    leaves a stale lock behind. The lock file is opened without following a symbolic link, and
    only a file fundguard created (it starts with "fundguard lock") is ever rewritten: anything
    else at that name is refused with :class:`OutputPlaceError`.
    """

    def __init__(self, target: str | os.PathLike[str], *, path: str | os.PathLike[str] | None = None) -> None:
        self.target = Path(target)
        self.path = Path(path) if path is not None else self.target.with_name(_side_name(self.target.name, "", ".lock"))
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, created = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _lock_holder(os.pread(fd, 128, 0))
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputBusyError(
                    f"output folder {str(self.target)!r} is being written by another run (pid {holder}); "
                    "wait for it or choose another --out"
                ) from None
            raise
        # Checked under the lock: a run that has just created the file holds the lock before it
        # writes the signature, so an unsigned file here was not made by fundguard.
        if not created and not _is_lock_text(os.pread(fd, 128, 0)):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise OutputPlaceError(
                f"lock file {str(self.path)!r} exists and was not written by fundguard; fundguard does not "
                "overwrite it: remove or rename it, or choose another --out")
        # The file is fundguard's, so rewriting it touches nothing of the user's.
        os.ftruncate(fd, 0)
        os.pwrite(fd, _lock_text(), 0)
        self._fd = fd
        return self

    def _open(self) -> tuple[int, bool]:
        """The lock file's descriptor, and whether this call created it."""
        # O_NOFOLLOW: a link at the lock's name is never followed (it could point at a config);
        # O_NONBLOCK: a FIFO at that name cannot hang the open.
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask()), True
        except FileExistsError:
            pass
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputPlaceError(
                    f"lock file {str(self.path)!r} is a symbolic link; fundguard does not follow it: "
                    "remove it or choose another --out") from None
            if exc.errno == errno.EISDIR:
                fd = None
            else:
                raise
        if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd is not None:
                os.close(fd)
            raise OutputPlaceError(f"lock file {str(self.path)!r} exists and is not a regular file; remove it "
                                   "or choose another --out")
        return fd, False

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _lock_text() -> bytes:
    return _LOCK_SIGNATURE + f", pid {os.getpid()}\n".encode()


def _is_lock_text(content: bytes) -> bool:
    # Versions before the signature wrote the bare pid; such a file is fundguard's too.
    return content.startswith(_LOCK_SIGNATURE) or re.fullmatch(rb"\d+\n?", content) is not None


def _lock_holder(content: bytes) -> str:
    found = re.search(rb"pid (\d+)", content) or re.fullmatch(rb"(\d+)\n?", content)
    return found.group(1).decode() if found else "unknown"


def check_output_folder(target: str | os.PathLike[str]) -> Path:
    """Refuse an output folder a run must not publish into; return it as it will be used.

    A run publishes into a path that does not exist (its missing parent folders are created), an
    empty folder, or a folder a previous run published (its :data:`MARKER` present and nothing
    in it but the unchanged files the marker lists). Raises :class:`OutputPlaceError` naming the
    folder and why for anything else: the root, a regular file, a symbolic link, a path under a
    regular file, a name longer than the file system allows, a folder with other files. Changes
    nothing on disk.
    """
    path = _normalized(target)
    try:
        _previous_marker(path, str(target))
    except FundguardError:
        raise
    except OSError as exc:  # an unreadable folder on the way
        raise output_write_error(exc, str(target)) from exc
    return path


def check_output_file(path: str | os.PathLike[str], *, kind: str, owned: Callable[[Path], bool]) -> Path:
    """Refuse a single output file a run must not write; return it.

    A run writes a file whose folder exists, at a name that is missing or holds a regular file
    ``owned(path)`` recognises as a previous ``kind`` fundguard wrote. Raises
    :class:`OutputPlaceError` for a folder, a symbolic link, another file, or a missing folder.
    """
    path = Path(path)
    shown = str(path)
    parent = path.parent
    if not parent.is_dir():
        why = "is a file, not a folder" if parent.exists() else "does not exist; create it first"
        raise OutputPlaceError(f"{kind} output {shown!r}: folder {str(parent)!r} {why}")
    _check_name_length(path, shown)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return path
    if stat.S_ISDIR(info.st_mode):
        raise OutputPlaceError(f"{kind} output {shown!r} is a folder; give a file name, e.g. "
                               f"{str(path / ('fundguard-' + kind + '.json'))!r}")
    if stat.S_ISLNK(info.st_mode):
        raise OutputPlaceError(f"{kind} output {shown!r} is a symbolic link; fundguard does not write through "
                               "links: give the file itself or a new name")
    if not stat.S_ISREG(info.st_mode) or not owned(path):
        raise OutputPlaceError(f"{kind} output {shown!r} exists and is not a {kind} fundguard wrote; fundguard "
                               "does not overwrite it: give a new name")
    return path


@contextlib.contextmanager
def staged_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Lock ``target``, yield an empty staging folder, publish it on success.

    ``target`` must pass :func:`check_output_folder` (checked before anything is created, and
    again under the lock). On an exception (or a signal that unwinds the stack) the staging
    folder is removed and ``target`` keeps its previous complete contents. An operating-system
    error while staging or publishing (read-only, full disk, file-size limit) is raised as
    :class:`OutputWriteError` naming ``target``.
    """
    shown = str(target)
    path = _normalized(target)
    try:
        _previous_marker(path, shown)  # refuse before creating anything: a refused place gets no lock file
        in_place = path.exists() and _cannot_be_renamed(path)
        if not in_place:
            path.parent.mkdir(parents=True, exist_ok=True)
        with OutputLock(path, path=path / _INNER_LOCK if in_place else None):
            previous = _previous_marker(path, shown)  # again: no other run can change it now
            run_id = uuid.uuid4().hex
            if in_place:
                with _staged_in_place(path, previous, run_id) as stage:
                    yield stage
                return
            _recover(path)
            staging = Path(tempfile.mkdtemp(prefix=_side_name(path.name, ".", ".staging-", reserve=_STAGING_RESERVE),
                                            dir=path.parent))
            try:
                staging.chmod(0o777 & ~_umask())  # the published folder: as mkdir would make it, not 0o700
                yield staging
                try:
                    _publish(staging, path, previous, run_id)
                except _NeedsInPlace:
                    try:
                        _publish_in_place(staging, path, previous, run_id)
                    finally:
                        shutil.rmtree(staging, ignore_errors=True)  # nothing was swapped into it
            finally:
                # Until the swap, staging holds only this run's files; after it, the previous outputs
                # (removed file by file by _publish, never wholesale).
                if os.path.lexists(staging) and not _published_by(path, run_id):
                    shutil.rmtree(staging, ignore_errors=True)
    except FundguardError:
        raise
    except OSError as exc:
        raise output_write_error(exc, shown) from exc


def _published_by(target: Path, run_id: str) -> bool:
    """Whether ``target`` carries the marker of run ``run_id``."""
    try:
        marker = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("run_id") == run_id


def publish_directory(staging: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Replace folder ``target`` by folder ``staging`` (same parent folder) in one step.

    ``target`` must pass :func:`check_output_folder`. ``staging`` gets the :data:`MARKER` of its
    files. Returns the target path. The previous contents of ``target`` are deleted afterwards,
    file by file, only where the previous marker proves fundguard wrote them.
    """
    staging, target = Path(staging), Path(target)
    _recover(target)
    previous = _previous_marker(target, str(target))
    _publish(staging, target, previous, uuid.uuid4().hex)
    return target


class _NeedsInPlace(Exception):
    """The target cannot be renamed (a mount point the mount table did not show): publish inside."""


def _publish(staging: Path, target: Path, previous: dict | None, run_id: str) -> None:
    _write_marker(staging, _marker(run_id, _hash_tree(staging)))
    _fsync_tree(staging)
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    failure = _exchange(staging, target)
    if failure == 0:
        _remove_owned(staging, previous)  # now holds the previous outputs
        return
    if failure in (errno.EXDEV, errno.EBUSY):
        (staging / MARKER).unlink()
        raise _NeedsInPlace
    # No renameat2 (or a file system without RENAME_EXCHANGE): two renames, the old folder aside.
    aside = target.with_name(_side_name(target.name, ".", ".previous"))
    if os.path.lexists(aside):
        _remove_owned(aside, _previous_marker(aside, str(aside)))
        if os.path.lexists(aside):
            raise OutputPlaceError(f"{str(aside)!r} is in the way of publishing {str(target)!r}: it holds files "
                                   "fundguard did not write; move it away")
    os.rename(target, aside)
    os.rename(staging, target)
    _remove_owned(aside, previous)


@contextlib.contextmanager
def _staged_in_place(target: Path, previous: dict | None, run_id: str) -> Iterator[Path]:
    """Stage inside ``target`` (a folder that cannot be renamed); swap the files in one by one."""
    stage = _begin_in_place(target, previous, run_id)
    swapping = False
    try:
        yield stage
        swapping = True
        _finish_in_place(stage, target, previous, run_id)
    finally:
        if not swapping:
            shutil.rmtree(stage, ignore_errors=True)  # made by this run
            _restore_marker(target, previous)


def _publish_in_place(source: Path, target: Path, previous: dict | None, run_id: str) -> None:
    """Publish the staged folder ``source`` (beside ``target``) inside ``target``, copying its files."""
    stage = _begin_in_place(target, previous, run_id)
    try:
        shutil.copytree(source, stage, dirs_exist_ok=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        _restore_marker(target, previous)
        raise
    _finish_in_place(stage, target, previous, run_id)


def _begin_in_place(target: Path, previous: dict | None, run_id: str) -> Path:
    old = _owned_hashes(previous)
    if previous is not None and previous.get("staging"):
        # The staging folder of a killed in-place run: the marker, written before the folder was
        # made, proves fundguard made it.
        shutil.rmtree(target / previous["staging"], ignore_errors=True)
    stage_name = f".fundguard-staging-{run_id[:16]}"
    # The marker owns the staging folder before it exists, so a run killed from here on leaves
    # a folder the next run still recognises as fundguard's.
    _write_marker(target, _marker(run_id, {}, replacing=old, staging=stage_name))
    stage = target / stage_name
    stage.mkdir(mode=0o777)
    return stage


def _finish_in_place(stage: Path, target: Path, previous: dict | None, run_id: str) -> None:
    old = _owned_hashes(previous)
    files = _hash_tree(stage)
    _fsync_tree(stage)
    _write_marker(target, _marker(run_id, files, replacing=old, staging=stage.name))
    for rel in sorted(files):
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / rel, destination)  # each file atomic; the set of files is not
    for rel, hashes in old.items():
        if rel not in files:
            _unlink_if_owned(target / rel, hashes)
    _remove_empty_folders(stage, keep_root=False)
    _remove_empty_folders(target, keep_root=True)
    _write_marker(target, _marker(run_id, files))


def _restore_marker(target: Path, previous: dict | None) -> None:
    if previous is None:
        (target / MARKER).unlink(missing_ok=True)  # written by this run into an empty folder
    else:
        _write_marker(target, previous)


def _normalized(target: str | os.PathLike[str]) -> Path:
    path = Path(target)
    if path.name in ("", ".", ".."):
        path = path.resolve()  # '.', '..', 'a/..', '/': the folder they name
    return path


def _cannot_be_renamed(path: Path) -> bool:
    """A mount point, or the folder this process runs in (or one above it)."""
    real = os.path.realpath(path)
    cwd = os.getcwd()
    if cwd == real or cwd.startswith(real.rstrip("/") + "/"):
        return True
    if os.path.ismount(path):
        return True
    # A bind mount of a folder of the same file system has the device of its parent, which
    # os.path.ismount cannot tell from a plain folder; the mount table can.
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
            points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in table}
    except OSError:
        return False
    return real in points


def _previous_marker(path: Path, shown: str) -> dict | None:
    """The marker of a previous run's folder at ``path``; None for a missing or empty folder.

    Raises OutputPlaceError for a place a run must not publish into.
    """
    where = shown if Path(shown) == path else f"{shown} ({path})"
    if path.name == "":
        raise OutputPlaceError(f"output folder {where!r} is the root of the file system; a run is published into "
                               "a folder of its own: choose a new or empty folder for --out")
    _check_name_length(path, where)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        _check_ancestors(path, where)
        return None
    except NotADirectoryError:
        _check_ancestors(path, where)
        raise
    if stat.S_ISLNK(info.st_mode):
        raise OutputPlaceError(f"output folder {where!r} is a symbolic link (to {os.readlink(path)!r}); fundguard "
                               "does not publish through links: give the folder itself or a new name for --out")
    if not stat.S_ISDIR(info.st_mode):
        raise OutputPlaceError(f"output folder {where!r} is a file, not a folder; fundguard does not replace it: "
                               "choose a new or empty folder for --out")
    marker = _read_marker(path, where)
    foreign = _foreign_entries(path, marker)
    if foreign:
        listed = ", ".join(repr(name) for name in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        whose = "the previous run did not write" if marker is not None else "fundguard did not write"
        raise OutputPlaceError(
            f"output folder {where!r} holds files {whose} ({listed}); a run publishes only into a new or empty "
            f"folder or one a previous run published (marker {MARKER}): choose another --out")
    return marker


def _check_ancestors(path: Path, where: str) -> None:
    for ancestor in path.parents:
        try:
            info = os.stat(ancestor)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            continue  # an ancestor further up is a file: found on the next round
        if not stat.S_ISDIR(info.st_mode):
            raise OutputPlaceError(f"output folder {where!r} is under {str(ancestor)!r}, which is a file, not a folder")
        return


def _check_name_length(path: Path, where: str) -> None:
    size = len(os.fsencode(path.name))
    limit = _name_max(path.parent)
    if size > limit:
        raise OutputPlaceError(f"output {where!r}: the name is {size} bytes, longer than the {limit} the file system "
                               "allows; choose a shorter name")


def _name_max(folder: Path) -> int:
    for candidate in (folder, *folder.parents):
        try:
            return int(os.pathconf(candidate, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return 255


def _side_name(name: str, prefix: str, suffix: str, *, reserve: int = 0) -> str:
    """``prefix + name + suffix``, with ``name`` shortened and hashed where the whole would pass
    NAME_MAX (255 bytes) once ``reserve`` more characters are appended."""
    full = f"{prefix}{name}{suffix}"
    if len(os.fsencode(full)) + reserve <= 255:
        return full
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return f"{prefix}{name[:40]}-{digest}{suffix}"


def _marker(run_id: str, files: Mapping[str, str], *, replacing: Mapping[str, list[str]] | None = None,
            staging: str | None = None) -> dict[str, Any]:
    marker: dict[str, Any] = {
        "schema": _MARKER_SCHEMA,
        "run_id": run_id,
        "written_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fundguard_version": package_versions(("fundguard",))["fundguard"],
        "files": dict(sorted(files.items())),
    }
    if replacing is not None:
        marker["replacing"] = {rel: sorted(hashes) for rel, hashes in sorted(replacing.items())}
    if staging is not None:
        marker["staging"] = staging
    return marker


def _write_marker(folder: Path, marker: Mapping[str, Any]) -> None:
    atomic_write_text(folder / MARKER, json.dumps(marker, indent=2) + "\n")


def _read_marker(folder: Path, where: str) -> dict | None:
    path = folder / MARKER
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "is not a regular file"
    else:
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problem = f"cannot be read ({exc})".replace("\n", " ")
        else:
            if (not isinstance(marker, dict) or marker.get("schema") != _MARKER_SCHEMA
                    or not isinstance(marker.get("files"), dict)
                    or not all(isinstance(h, str) for h in marker["files"].values())
                    or not isinstance(marker.get("replacing", {}), dict)
                    or not isinstance(marker.get("staging", ""), str)):
                problem = f"is not a {_MARKER_SCHEMA} marker"
    if problem:
        raise OutputPlaceError(f"output folder {where!r}: its {MARKER} {problem}; fundguard cannot tell which files "
                               "it wrote there: choose another --out")
    return marker


def _owned_hashes(marker: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """Relative path -> the SHA-256 values a file there may have and still be fundguard's."""
    owned: dict[str, set[str]] = {}
    if marker is None:
        return owned
    for rel, hashes in marker.get("replacing", {}).items():
        owned.setdefault(rel, set()).update(h for h in hashes if isinstance(h, str))
    for rel, digest in marker["files"].items():
        owned.setdefault(rel, set()).add(digest)
    return owned


def _foreign_entries(folder: Path, marker: Mapping[str, Any] | None) -> list[str]:
    """What in ``folder`` fundguard cannot prove it wrote, relative paths, folders ending in '/'."""
    owned = _owned_hashes(marker)
    staging = marker.get("staging") if marker else None
    foreign: list[str] = []

    def visit(directory: str, prefix: str) -> None:
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix + entry.name
                if prefix == "" and entry.name == MARKER:
                    continue
                if prefix == "" and entry.name == _INNER_LOCK and _is_our_lock(entry.path):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if prefix == "" and entry.name == staging:
                        continue  # the staging folder of an in-place run, named by the marker
                    if any(name.startswith(rel + "/") for name in owned):
                        visit(entry.path, rel + "/")
                    else:
                        foreign.append(rel + "/")
                elif rel in owned and entry.is_file(follow_symlinks=False):
                    if sha256_file(entry.path) not in owned[rel]:
                        foreign.append(f"{rel} (changed since fundguard wrote it)")
                else:
                    foreign.append(rel)

    visit(os.fspath(folder), "")
    return foreign


def _is_our_lock(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode) and _is_lock_text(os.pread(fd, 128, 0))
    finally:
        os.close(fd)


def _hash_tree(folder: Path) -> dict[str, str]:
    """Relative POSIX path -> SHA-256 of every file under ``folder`` (the marker itself excluded)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel != MARKER and path.is_file() and not path.is_symlink():
            files[rel] = sha256_file(path)
    return files


def _unlink_if_owned(path: Path, hashes: set[str]) -> None:
    with contextlib.suppress(OSError):
        if path.is_file() and not path.is_symlink() and sha256_file(path) in hashes:
            path.unlink()


def _remove_owned(folder: Path, marker: Mapping[str, Any] | None) -> None:
    """Remove a previous run's folder: only the files its marker lists (unchanged), the marker,
    and the folders that are then empty. Whatever else is there stays (logged)."""
    for rel, hashes in _owned_hashes(marker).items():
        _unlink_if_owned(folder / rel, hashes)
    (folder / MARKER).unlink(missing_ok=True)
    if _is_our_lock(os.fspath(folder / _INNER_LOCK)):  # the folder was once published in place
        (folder / _INNER_LOCK).unlink()
    _remove_empty_folders(folder, keep_root=False)
    if os.path.lexists(folder):
        logger.warning("kept %s: it holds files fundguard did not write", folder)


def _remove_empty_folders(folder: Path, *, keep_root: bool) -> None:
    for directory, _, _ in sorted(os.walk(folder), key=lambda item: -len(item[0])):
        if keep_root and directory == os.fspath(folder):
            continue
        with contextlib.suppress(OSError):
            os.rmdir(directory)  # fails, and keeps the folder, unless it is empty


def output_write_error(exc: OSError, shown: str) -> OutputWriteError:
    """``exc``, raised while writing the outputs named ``shown``, as one line naming them."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EFBIG: "a file exceeds the file-size limit (ulimit -f)",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENAMETOOLONG: "a name is too long for the file system",
    }
    reason = reasons.get(exc.errno) or exc.strerror or str(exc) or exc.__class__.__name__
    name = errno.errorcode.get(exc.errno, "") if exc.errno else ""
    at = f" at {os.path.basename(os.fsdecode(exc.filename))!r}" if exc.filename is not None else ""
    error = OutputWriteError(f"cannot write the outputs to {shown!r}: {reason}{f' [{name}]' if name else ''}{at}; "
                             "the previous outputs, if any, are kept".replace("\n", " "))
    error.errno = exc.errno
    return error


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


def _recover(target: Path) -> None:
    # A run killed between the two renames of the fallback path left the old outputs aside;
    # put them back only if their marker proves they are fundguard's.
    aside = target.with_name(_side_name(target.name, ".", ".previous"))
    if os.path.lexists(aside) and not os.path.lexists(target):
        try:
            _previous_marker(aside, str(aside))
        except OutputPlaceError:
            return
        if (aside / MARKER).exists():
            os.rename(aside, target)


def _exchange(a: Path, b: Path) -> int | None:
    """Swap ``a`` and ``b`` with renameat2(RENAME_EXCHANGE): 0, the errno of a failure, or None
    where the C library has no renameat2."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return None
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return 0 if result == 0 else ctypes.get_errno()


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
