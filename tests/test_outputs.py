"""Tests of atomic outputs (fundguard.optimizer.job.outputs): all-or-nothing folders, locks, atomic files."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from fundguard.optimizer.job.outputs import (
    MARKER,
    OutputBusyError,
    OutputLock,
    atomic_write_text,
    publish_directory,
    staged_output,
)


def _write_run(folder: Path, tag: str, n_files: int = 20) -> None:
    for i in range(n_files):
        (folder / f"part{i:02d}.txt").write_text(tag * 1000)


def _run_files(folder: Path) -> list[Path]:
    """The files a run wrote into ``folder`` (its marker aside)."""
    return sorted(p for p in folder.iterdir() if p.name != MARKER)


def test_staged_output_replaces_whole_folder(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        _write_run(stage, "a")
    with staged_output(out) as stage:
        _write_run(stage, "b", n_files=3)
    assert [p.name for p in _run_files(out)] == ["part00.txt", "part01.txt", "part02.txt"]
    assert {p.read_text()[0] for p in _run_files(out)} == {"b"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_exception_during_write_keeps_previous_outputs(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        _write_run(stage, "a")
    with pytest.raises(RuntimeError, match="disk"):
        with staged_output(out) as stage:
            (stage / "part00.txt").write_text("b")
            raise RuntimeError("disk full")
    assert len(_run_files(out)) == 20 and {p.read_text()[0] for p in _run_files(out)} == {"a"}
    assert not list(tmp_path.glob(".out.staging-*"))


def test_publish_into_missing_target(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "x").write_text("1")
    publish_directory(stage, tmp_path / "new")
    assert (tmp_path / "new" / "x").read_text() == "1" and not stage.exists()


def test_lock_excludes_a_second_writer(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out):
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            with OutputLock(out):
                pass
    with OutputLock(out):  # released
        pass


def test_atomic_write_text(tmp_path):
    path = tmp_path / "r.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_outputs_get_the_permissions_of_plain_files_and_folders(tmp_path):
    # A temporary file is 0o600 and a temporary folder 0o700: published results must instead
    # be readable by whoever could read a plainly written file (a dashboard, a colleague).
    plain_file, plain_dir = tmp_path / "plain.txt", tmp_path / "plain"
    plain_file.write_text("x")
    plain_dir.mkdir()
    atomic_write_text(tmp_path / "r.json", "{}")
    with staged_output(tmp_path / "out") as stage:
        _write_run(stage, "a", n_files=1)
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "r.json") == mode(plain_file)
    assert mode(tmp_path / "out") == mode(plain_dir)


def _writer(out: str, tag: str) -> None:
    while True:
        with staged_output(Path(out)) as stage:
            _write_run(stage, tag)
            time.sleep(0.001)


def test_sigterm_at_random_times_never_leaves_a_mixture(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        _write_run(stage, "0")
    ctx = multiprocessing.get_context("fork")
    rng = __import__("random").Random(1)
    for round_ in range(15):
        proc = ctx.Process(target=_writer, args=(str(out), "abcdefghijklmnopqrstuvwxyz"[round_ % 26]))
        proc.start()
        time.sleep(rng.uniform(0.005, 0.08))
        os.kill(proc.pid, signal.SIGKILL if round_ % 2 else signal.SIGTERM)
        proc.join()
        files = _run_files(out)
        assert len(files) == 20, f"round {round_}: {len(files)} files"
        tags = {p.read_text() for p in files}
        assert len(tags) == 1 and len(next(iter(tags))) == 1000, f"round {round_}: mixture"
