"""Safety of the output places (issue 13, items 1, 2 and 7): a run never deletes or changes what it
did not write, and every refused or failed output place is one line and exit 2.

Covers ``fundguard.optimizer.job.outputs`` (check_output_folder, staged_output, OutputLock) through the
library and through ``fundguard calibrate|frontier|preset build --out``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fundguard.optimizer.job.outputs as outputs
import fundguard.optimizer.job.report as report
from fundguard.optimizer.job.cli import EXIT_BELOW_TARGET, EXIT_BUSY, EXIT_INPUT, EXIT_OK, main
from fundguard.optimizer.job.outputs import (
    MARKER,
    OutputLock,
    OutputPlaceError,
    OutputWriteError,
    check_output_folder,
    staged_output,
)

# -- helpers ---------------------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed): kind and content hash / link target / mode."""
    found = {}
    for directory, folders, files in os.walk(root):
        for name in folders + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode))
            elif stat.S_ISREG(info.st_mode):
                found[rel] = ("file", hashlib.sha256(Path(path).read_bytes()).hexdigest(), stat.S_IMODE(info.st_mode))
            else:
                found[rel] = ("other", stat.S_IFMT(info.st_mode))
    return found


def _write_run(folder: Path, tag: str = "a", n_files: int = 3) -> None:
    for i in range(n_files):
        (folder / f"part{i}.txt").write_text(tag * 100)


def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "btc.csv").write_text("date,close\n2024-01-01,42000\n")
    (path / "notes").mkdir()
    (path / "notes" / "todo.md").write_text("call the venue\n")
    return path


def _one_line(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    """A calibration that takes well under a second: one synthetic market, 1,000 scenarios."""
    from arch.univariate import GARCH, ConstantMean, StudentsT

    folder = tmp_path_factory.mktemp("safety")
    model = ConstantMean(None)
    model.volatility = GARCH(1, 1, 1)
    model.distribution = StudentsT(seed=np.random.default_rng(5))
    returns = model.simulate([0.0, 0.05, 0.05, 0.10, 0.88, 5.0], 800, burn=300).data.to_numpy() / 100
    prices = folder / "sim.csv"
    pd.DataFrame({"date": pd.date_range("2020-01-01", periods=800, freq="D").strftime("%Y-%m-%d"),
                  "close": 100 * np.exp(np.cumsum(returns))}).to_csv(prices, index=False)
    path = folder / "fund.toml"
    path.write_text(
        "[scenarios]\nn_scenarios = 1000\ncertify_scenarios = 2000\nhorizon = 5\nseed = 1\ninnovations = \"fhs\"\n\n"
        "[problem]\nalpha = 0.05\ncost_of_capital = 0.01\npremium_max = 0.01\nmethod = \"cvar\"\n\n"
        f"[[markets]]\nname = \"SIM\"\nprices = {json.dumps(str(prices))}\nopen_interest = 1e9\ndaily_volume = 3e9\n"
    )
    return path


def _calibrate(config_file: Path, out: Path | str, *extra: str) -> int:
    return main(["calibrate", "--config", str(config_file), "--out", str(out), "--quiet", "--no-frontier", *extra])


@contextlib.contextmanager
def _bind_mount(source: Path, mount_point: Path, *, read_only: bool = False):
    """``mount --bind source mount_point`` for the block; skips the test where mounting is not allowed."""
    mount_point.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "--bind", str(source), str(mount_point)], capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
    try:
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(mount_point)], check=True, timeout=30)
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=30)


# -- item 1: only into a missing, empty or previously published folder -------------------------------


def test_a_folder_with_user_files_is_refused_and_untouched(tmp_path, config_file, capsys):
    docs = _user_folder(tmp_path / "docs")
    before = _snapshot(tmp_path)
    assert _calibrate(config_file, docs) == EXIT_INPUT
    err = _one_line(capsys)
    assert str(docs) in err and "holds files fundguard did not write" in err and "'btc.csv'" in err
    assert _snapshot(tmp_path) == before  # not even a lock file beside it


def test_the_data_folder_next_to_the_config_is_refused(tmp_path, config_file, capsys):
    data = _user_folder(config_file.parent / "data")
    before = _snapshot(config_file.parent)
    assert main(["frontier", "--config", str(config_file), "--alphas", "0.05", "--out", str(data), "--quiet"]) == EXIT_INPUT
    assert "holds files fundguard did not write" in _one_line(capsys)
    assert _snapshot(config_file.parent) == before


def test_missing_empty_and_previous_output_are_published(tmp_path, config_file, capsys):
    out = tmp_path / "results" / "today"  # missing parents are created
    assert _calibrate(config_file, out) in (EXIT_OK, EXIT_BELOW_TARGET)
    marker = json.loads((out / MARKER).read_text())
    names = {p.name for p in out.iterdir()}
    assert set(marker["files"]) == names - {MARKER} and "result.json" in names
    assert marker["files"]["result.json"] == hashlib.sha256((out / "result.json").read_bytes()).hexdigest()
    assert _calibrate(config_file, out, "--seed", "7") in (EXIT_OK, EXIT_BELOW_TARGET)  # a previous run's folder
    assert json.loads((out / "result.json").read_text())["inputs"]["seed"] == 7
    assert json.loads((out / MARKER).read_text())["run_id"] != marker["run_id"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _calibrate(config_file, empty) in (EXIT_OK, EXIT_BELOW_TARGET)
    assert (empty / "result.json").is_file()
    capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "empty.lock", "results"]  # no staging left


def test_a_previous_output_with_a_user_file_added_or_a_file_changed_is_refused(tmp_path):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        _write_run(stage)
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputPlaceError, match=r"the previous run did not write \('mine.txt'\)"):
        with staged_output(out) as stage:
            _write_run(stage, "b")
    assert (out / "mine.txt").read_text() == "keep me" and (out / "part0.txt").read_text() == "a" * 100
    (out / "mine.txt").unlink()
    (out / "part1.txt").write_text("edited by hand")
    with pytest.raises(OutputPlaceError, match=r"part1.txt \(changed since fundguard wrote it\)"):
        check_output_folder(out)
    (out / "part1.txt").write_text("a" * 100)  # back as fundguard wrote it: publishable again
    with staged_output(out) as stage:
        _write_run(stage, "c", n_files=1)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "part0.txt"]


def test_a_marker_that_cannot_be_read_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARKER).write_text("{not json")
    with pytest.raises(OutputPlaceError, match=r"cannot tell which files it wrote"):
        check_output_folder(out)


def test_a_hidden_staging_folder_this_run_did_not_make_is_kept(tmp_path):
    foreign = tmp_path / ".out.staging-mine"
    foreign.mkdir()
    (foreign / "draft.txt").write_text("not fundguard's")
    aside = tmp_path / ".out.previous"
    aside.mkdir()
    (aside / "old.txt").write_text("not fundguard's either")
    for tag in "ab":
        with staged_output(tmp_path / "out") as stage:
            _write_run(stage, tag)
    assert (foreign / "draft.txt").read_text() == "not fundguard's"
    assert (aside / "old.txt").read_text() == "not fundguard's either"


def test_a_regular_file_as_out_is_refused_not_hidden(tmp_path, config_file, capsys):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF-1.7 user document")
    before = _snapshot(tmp_path)
    assert _calibrate(config_file, target) == EXIT_INPUT
    assert "is a file, not a folder" in _one_line(capsys)
    assert _snapshot(tmp_path) == before


def test_a_symlinked_out_is_not_followed(tmp_path, config_file, capsys):
    real = _user_folder(tmp_path / "real")
    empty = tmp_path / "empty"
    empty.mkdir()
    links = {"to_user_folder": real, "to_empty_folder": empty, "dangling": tmp_path / "nowhere"}
    for name, points_to in links.items():
        (tmp_path / name).symlink_to(points_to)  # even a link to an empty folder is neither followed nor replaced
    before = _snapshot(tmp_path)
    for name in links:
        assert _calibrate(config_file, tmp_path / name) == EXIT_INPUT
        assert "is a symbolic link" in _one_line(capsys)
    assert _snapshot(tmp_path) == before


def test_a_library_caller_gets_the_same_refusal(tmp_path):
    docs = _user_folder(tmp_path / "docs")
    with pytest.raises(OutputPlaceError, match="docs") as info:
        with staged_output(docs) as stage:
            _write_run(stage)
    assert isinstance(info.value, ValueError)
    with pytest.raises(OutputPlaceError, match="holds files"):
        outputs.publish_directory(tmp_path / "nothing", docs)


# -- item 1: a mount point or the working folder is published inside ---------------------------------


def test_a_real_bind_mount_is_published_inside(tmp_path, config_file, capsys):
    volume = tmp_path / "volume"
    volume.mkdir()
    with _bind_mount(volume, tmp_path / "out") as out:
        assert _calibrate(config_file, out) in (EXIT_OK, EXIT_BELOW_TARGET), capsys.readouterr().err
        assert os.path.ismount(out) or outputs._cannot_be_renamed(out)
        first = json.loads((out / MARKER).read_text())
        assert _calibrate(config_file, out, "--seed", "3") in (EXIT_OK, EXIT_BELOW_TARGET), capsys.readouterr().err
        assert json.loads((out / "result.json").read_text())["inputs"]["seed"] == 3
        marker = json.loads((out / MARKER).read_text())
        assert marker["run_id"] != first["run_id"] and "replacing" not in marker and "staging" not in marker
        assert {p.name for p in out.iterdir()} == {*marker["files"], MARKER, ".fundguard.lock"}
        (out / "host-notes.txt").write_text("the host's")
        assert _calibrate(config_file, out) == EXIT_INPUT
        assert "host-notes.txt" in _one_line(capsys)
    assert {p.name for p in volume.iterdir()} >= {"result.json", "host-notes.txt"}  # it was written on the volume
    assert not list(tmp_path.glob(".out.staging-*"))


def test_in_place_publishing_replaces_files_and_drops_old_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_cannot_be_renamed", lambda path: True)
    out = tmp_path / "out"
    out.mkdir()
    with staged_output(out) as stage:
        _write_run(stage, "a", n_files=3)
        (stage / "plots").mkdir()
        (stage / "plots" / "p.png").write_bytes(b"png")
    with staged_output(out) as stage:
        _write_run(stage, "b", n_files=2)
    assert {p.name for p in out.iterdir()} == {".fundguard.lock", MARKER, "part0.txt", "part1.txt"}
    assert {(out / f"part{i}.txt").read_text() for i in range(2)} == {"b" * 100}
    with pytest.raises(RuntimeError):  # a failing run keeps the previous outputs and marker
        with staged_output(out) as stage:
            _write_run(stage, "c")
            raise RuntimeError("plot failed")
    assert (out / "part0.txt").read_text() == "b" * 100 and "staging" not in json.loads((out / MARKER).read_text())
    assert {p.name for p in out.iterdir()} == {".fundguard.lock", MARKER, "part0.txt", "part1.txt"}


def test_an_in_place_swap_cut_short_is_recognised_and_published_over(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "_cannot_be_renamed", lambda path: True)
    out = tmp_path / "out"
    with staged_output(out) as stage:  # missing: made beside, like any folder
        _write_run(stage, "a", n_files=4)
    real_replace, calls = os.replace, []

    def dies_after_two(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) > 2:
            raise KeyboardInterrupt  # stands in for a kill in the middle of the swap
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(outputs.os, "replace", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        with staged_output(out) as stage:
            _write_run(stage, "b", n_files=3)
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    marker = json.loads((out / MARKER).read_text())
    assert "replacing" in marker and (out / marker["staging"]).is_dir()  # half swapped, and says so
    with staged_output(out) as stage:
        _write_run(stage, "c", n_files=2)
    assert {p.name for p in out.iterdir()} == {".fundguard.lock", MARKER, "part0.txt", "part1.txt"}
    assert {(out / f"part{i}.txt").read_text() for i in range(2)} == {"c" * 100}


def test_a_mount_point_the_mount_table_missed_falls_back_to_in_place(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with staged_output(out) as stage:
        _write_run(stage, "a")
    monkeypatch.setattr(outputs, "_exchange", lambda a, b: errno.EBUSY)  # what renameat2 says on a mount point
    with staged_output(out) as stage:
        _write_run(stage, "b", n_files=2)
    assert {p.name for p in out.iterdir()} == {".fundguard.lock", MARKER, "part0.txt", "part1.txt"} \
        or sorted(p.name for p in out.iterdir()) == [MARKER, "part0.txt", "part1.txt"]
    assert (out / "part0.txt").read_text() == "b" * 100
    assert not list(tmp_path.glob(".out.staging-*"))


def test_dot_is_published_inside_when_empty_and_refused_with_files(tmp_path, monkeypatch, config_file, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert _calibrate(config_file, ".") in (EXIT_OK, EXIT_BELOW_TARGET), capsys.readouterr().err
    assert (work / "result.json").is_file() and Path.cwd() == work and os.path.samefile(".", work)
    assert _calibrate(config_file, ".") in (EXIT_OK, EXIT_BELOW_TARGET)  # its own previous output
    (work / "fund.toml").write_text("[problem]\n")
    capsys.readouterr()
    assert _calibrate(config_file, ".") == EXIT_INPUT
    err = _one_line(capsys)
    assert f"'. ({work})'" in err and "holds files the previous run did not write ('fund.toml')" in err


# -- item 2: the lock file --------------------------------------------------------------------------


def test_a_symlinked_lock_file_is_not_followed(tmp_path, config_file, capsys):
    precious = tmp_path / "some.cfg"
    precious.write_text("key = 1\n")
    (tmp_path / "out.lock").symlink_to(precious)
    before = _snapshot(tmp_path)
    assert _calibrate(config_file, tmp_path / "out") == EXIT_INPUT
    err = _one_line(capsys)
    assert "out.lock" in err and "symbolic link" in err
    assert _snapshot(tmp_path) == before and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["user file", "empty file", "fifo", "folder"])
def test_a_lock_name_fundguard_did_not_create_is_never_truncated(tmp_path, kind):
    lock = tmp_path / "out.lock"
    if kind == "user file":
        lock.write_text("my lock notes\n")
    elif kind == "empty file":
        lock.touch()
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(OutputPlaceError, match="out.lock"):
        with staged_output(tmp_path / "out") as stage:
            _write_run(stage)
    assert _snapshot(tmp_path) == before


def test_fundguards_own_lock_is_reused_and_a_busy_one_gives_exit_5(tmp_path, config_file, capsys):
    out = tmp_path / "out"
    assert _calibrate(config_file, out) in (EXIT_OK, EXIT_BELOW_TARGET)
    assert (tmp_path / "out.lock").read_text() == f"fundguard lock, pid {os.getpid()}\n"
    before = _snapshot(out)
    with OutputLock(out):
        assert _calibrate(config_file, out, "--seed", "9") == EXIT_BUSY
        err = _one_line(capsys)
        assert f"pid {os.getpid()}" in err and str(out) in err
    assert _snapshot(out) == before


# -- item 7: output places that cannot work ----------------------------------------------------------


@pytest.mark.parametrize(("out", "fragment"), [
    ("/", "is the root of the file system"),
    ("..", "holds files fundguard did not write"),
])
def test_root_and_parent_are_refused(tmp_path, monkeypatch, config_file, capsys, out, fragment):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _snapshot(tmp_path)
    assert _calibrate(config_file, out) == EXIT_INPUT
    err = _one_line(capsys)
    assert fragment in err and repr(out)[1:-1] in err
    assert _snapshot(tmp_path) == before


def test_under_a_regular_file_is_refused(tmp_path, config_file, capsys):
    (tmp_path / "prices.csv").write_text("date,close\n")
    before = _snapshot(tmp_path)
    assert _calibrate(config_file, tmp_path / "prices.csv" / "out" / "deeper") == EXIT_INPUT
    assert f"is under '{tmp_path / 'prices.csv'}', which is a file" in _one_line(capsys)
    assert _snapshot(tmp_path) == before


def test_a_250_character_name_works_and_a_256_byte_one_is_one_line(tmp_path, config_file, capsys):
    long = tmp_path / ("r" * 250)
    assert _calibrate(config_file, long) in (EXIT_OK, EXIT_BELOW_TARGET), capsys.readouterr().err
    assert (long / "result.json").is_file()
    assert _calibrate(config_file, long) in (EXIT_OK, EXIT_BELOW_TARGET)  # and again, over itself
    assert not [p for p in tmp_path.iterdir() if ".staging-" in p.name]
    capsys.readouterr()
    assert _calibrate(config_file, tmp_path / ("é" * 128)) == EXIT_INPUT  # 256 bytes in UTF-8
    assert "the name is 256 bytes, longer than the 255" in _one_line(capsys)
    with staged_output(tmp_path / ("x" * 255)) as stage:  # the longest name: lock and staging names hashed
        _write_run(stage)
    assert {p.name for p in (tmp_path / ("x" * 255)).iterdir()} == {MARKER, "part0.txt", "part1.txt", "part2.txt"}


@pytest.mark.parametrize(("code", "fragment"), [
    (errno.ENOSPC, "no space left on the device [ENOSPC]"),
    (errno.EROFS, "the file system is read-only [EROFS]"),
    (errno.EFBIG, "file-size limit"),
    (errno.EACCES, "permission denied [EACCES]"),
])
def test_a_failing_disk_is_one_line_and_keeps_the_previous_outputs(tmp_path, monkeypatch, config_file, capsys,
                                                                   code, fragment):
    out = tmp_path / "out"
    assert _calibrate(config_file, out) in (EXIT_OK, EXIT_BELOW_TARGET)
    before = _snapshot(tmp_path)

    def broken(result, folder):
        raise OSError(code, os.strerror(code), str(folder / "fund_paths.png"))

    monkeypatch.setattr(report, "write_plots", broken)
    capsys.readouterr()
    assert _calibrate(config_file, out) == EXIT_INPUT
    err = _one_line(capsys)
    assert f"cannot write the outputs to '{out}'" in err and fragment in err and "'fund_paths.png'" in err
    assert _snapshot(tmp_path) == before


def test_staging_on_a_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(outputs.tempfile, "mkdtemp", read_only)
    with pytest.raises(OutputWriteError, match=r"read-only \[EROFS\]") as info:
        with staged_output(tmp_path / "out") as stage:
            _write_run(stage)
    assert info.value.errno == errno.EROFS and isinstance(info.value, OSError)


def test_a_real_read_only_mount_is_one_line(tmp_path, config_file, capsys):
    source = tmp_path / "source"
    source.mkdir()
    with _bind_mount(source, tmp_path / "ro", read_only=True) as ro:
        assert _calibrate(config_file, ro / "out") == EXIT_INPUT
        err = _one_line(capsys)
        assert "read-only" in err and str(ro / "out") in err


_EFBIG_SCRIPT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process instead of failing the write
resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))
from fundguard.optimizer.job.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_file_size_limit_is_one_line_in_a_real_process(tmp_path, config_file):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _EFBIG_SCRIPT, "calibrate", "--config", str(config_file), "--out",
                           str(out), "--quiet", "--no-frontier"], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_INPUT, done.stderr
    err = done.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert f"cannot write the outputs to '{out}'" in err and "[EFBIG]" in err
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))


# -- item 7: preset build --out -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def price_file(config_file) -> Path:
    return config_file.parent / "sim.csv"


def _preset_build(price_file: Path, out: Path) -> int:
    return main(["preset", "build", "--prices", f"SIM={price_file}", "--out", str(out)])


def test_preset_build_writes_and_rewrites_its_own_file(tmp_path, price_file, capsys):
    out = tmp_path / "preset.json"
    assert _preset_build(price_file, out) == EXIT_OK
    assert _preset_build(price_file, out) == EXIT_OK  # a preset fundguard wrote: replaced
    assert json.loads(out.read_text())["models"]["SIM"]
    capsys.readouterr()


@pytest.mark.parametrize(("make", "fragment"), [
    ("folder", "is a folder; give a file name"),
    ("missing parent", "does not exist; create it first"),
    ("under a file", "is a file, not a folder"),
    ("symlink", "is a symbolic link"),
    ("price file", "exists and is not a preset fundguard wrote"),
])
def test_preset_build_refuses_bad_places(tmp_path, price_file, capsys, make, fragment):
    if make == "folder":
        out = tmp_path / "presets"
        out.mkdir()
    elif make == "missing parent":
        out = tmp_path / "missing" / "preset.json"
    elif make == "under a file":
        (tmp_path / "a.txt").write_text("x")
        out = tmp_path / "a.txt" / "preset.json"
    elif make == "symlink":
        (tmp_path / "target.json").write_text("{}")
        out = tmp_path / "preset.json"
        out.symlink_to(tmp_path / "target.json")
    else:
        out = tmp_path / "btc.csv"
        out.write_text("date,close\n2024-01-01,42000\n")
    before = _snapshot(tmp_path)
    assert _preset_build(price_file, out) == EXIT_INPUT
    err = _one_line(capsys)
    assert fragment in err and str(out) in err
    assert _snapshot(tmp_path) == before


def test_preset_write_on_a_full_disk_is_one_line(tmp_path, price_file, monkeypatch, capsys):
    import fundguard.optimizer.job.preset as preset

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(preset, "atomic_write_text", full)
    assert _preset_build(price_file, tmp_path / "preset.json") == EXIT_INPUT
    assert "no space left on the device [ENOSPC]" in _one_line(capsys)


# -- property: no user file is ever removed or changed --------------------------------------------------

_KINDS = ("missing", "empty", "previous output", "user files", "regular file", "symlink")


def _build(root: Path, kind: str, lock: str, sibling: bool, extra_in_previous: bool) -> None:
    (root / "elsewhere").mkdir()
    (root / "elsewhere" / "prices.csv").write_text("date,close\n")
    out = root / "out"
    if kind == "empty":
        out.mkdir()
    elif kind == "previous output":
        with staged_output(out) as stage:
            _write_run(stage, "p")
        if extra_in_previous:
            (out / "added-by-user.txt").write_text("mine")
    elif kind == "user files":
        _user_folder(out)
    elif kind == "regular file":
        out.write_text("a user's file named out")
    elif kind == "symlink":
        out.symlink_to(root / "elsewhere")
    if lock == "user file":
        (root / "out.lock").unlink(missing_ok=True)
        (root / "out.lock").write_text("not a lock")
    elif lock == "symlink":
        (root / "out.lock").unlink(missing_ok=True)
        (root / "out.lock").symlink_to(root / "elsewhere" / "prices.csv")
    if sibling:
        (root / ".out.staging-abc123").mkdir()
        (root / ".out.staging-abc123" / "draft.txt").write_text("someone's draft")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(_KINDS), lock=st.sampled_from(("none", "user file", "symlink")), sibling=st.booleans(),
       extra_in_previous=st.booleans(), fails=st.booleans())
def test_no_user_file_is_ever_removed_or_changed(kind, lock, sibling, extra_in_previous, fails):
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        _build(root, kind, lock, sibling, extra_in_previous)
        before = _snapshot(root)
        ours_before = kind in ("missing", "empty") or (kind == "previous output" and not extra_in_previous)
        outcome = "published"
        try:
            with staged_output(root / "out") as stage:
                _write_run(stage, "n", n_files=2)
                if fails:
                    raise RuntimeError("the run failed while writing")
        except OutputPlaceError:
            outcome = "refused"
        except RuntimeError:
            outcome = "failed"
        after = _snapshot(root)
        # What fundguard owns: the folder it publishes (when it was fundguard's to publish into) and its lock.
        owned = lambda rel: (rel == "out.lock" and lock == "none") or (  # noqa: E731
            ours_before and (rel == "out" or rel.startswith("out/")))
        assert {k: v for k, v in before.items() if not owned(k)} == {k: v for k, v in after.items() if not owned(k)}
        assert all(owned(k) for k in set(after) - set(before)), sorted(set(after) - set(before))
        if outcome == "refused":
            assert not ours_before or lock != "none"
            assert after == before  # refused before anything was created
        else:
            assert ours_before and lock == "none"
            if outcome == "published":
                assert sorted(p.name for p in (root / "out").iterdir()) == [MARKER, "part0.txt", "part1.txt"]
            else:  # a failed run keeps the previous outputs as they were
                assert {k: v for k, v in before.items() if k == "out" or k.startswith("out/")} == \
                    {k: v for k, v in after.items() if k == "out" or k.startswith("out/")}


def test_a_lock_an_older_fundguard_wrote_is_reused(tmp_path):
    (tmp_path / "out.lock").write_text("4242")  # the bare pid of versions before the signature
    with staged_output(tmp_path / "out") as stage:
        _write_run(stage)
    assert (tmp_path / "out.lock").read_text().startswith("fundguard lock")


def test_an_unreadable_folder_on_the_way_is_one_line(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def denied(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(outputs.os, "scandir", denied)
    with pytest.raises(OutputWriteError, match=r"permission denied \[EACCES\]"):
        check_output_folder(out)


def test_a_folder_once_published_in_place_is_published_over_beside(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(outputs, "_cannot_be_renamed", lambda path: True)
        with staged_output(out) as stage:
            _write_run(stage, "a")
    assert (out / ".fundguard.lock").is_file()
    with staged_output(out) as stage:  # no longer a mount point: swapped as a whole
        _write_run(stage, "b")
    assert {p.name for p in out.iterdir()} == {MARKER, "part0.txt", "part1.txt", "part2.txt"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the old folder fully removed
