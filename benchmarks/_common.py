"""What every benchmark shares: the command line, provenance, result files.

A benchmark is one command, reproducible from a seed; every table and figure it writes says
which command, seed, machine and date produced it (:class:`Provenance`). Files are written one
at a time with :func:`fundguard.optimizer.job.outputs.atomic_write_text` / ``atomic_write_bytes``
(never a folder swap: several benchmarks share ``benchmarks/results/``), so a reader never sees
half a file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import io
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: figures go to files only

import matplotlib.pyplot as plt  # noqa: E402

from fundguard.optimizer.job.outputs import atomic_write_bytes, atomic_write_text  # noqa: E402

__all__ = [
    "REPO_ROOT",
    "DEFAULT_DATA",
    "DEFAULT_RESULTS",
    "DAILY_FILES",
    "DATA_HELP",
    "Provenance",
    "write_results",
    "percent",
    "millions",
    "machine_description",
    "parser",
    "provenance",
    "data_available",
    "write_text",
    "save_figure",
    "markdown_table",
    "fail",
]

#: The repository root (benchmarks/ is run from the repository, never installed).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The real market data beside the project's own checkout: ``<repo>/../shared/data``.
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data"
#: Where results are written by default.
DEFAULT_RESULTS = REPO_ROOT / "benchmarks" / "results"
#: The files a data folder must hold.
DAILY_FILES = {"BTC": "binance_BTCUSDT_daily.csv", "ETH": "binance_ETHUSDT_daily.csv", "SOL": "binance_SOLUSDT_daily.csv"}
DATA_HELP = (
    "a folder holding the Binance daily price files binance_BTCUSDT_daily.csv, binance_ETHUSDT_daily.csv, "
    "binance_SOLUSDT_daily.csv (and insurance_fund_events_reported.csv for the backtest): the project's "
    "shared/data folder, which sits beside the checkout and is never part of it"
)


@dataclass(frozen=True)
class Provenance:
    """Who produced a result: command, seed, machine, date, code version."""

    command: str
    seed: int | None
    machine: str
    date: str
    code: str

    def markdown(self) -> str:
        """A block of Markdown lines for the top of a results file."""
        seed = "n/a" if self.seed is None else str(self.seed)
        return "\n".join([
            f"- command: `{self.command}`",
            f"- seed: {seed}",
            f"- machine: {self.machine}",
            f"- date: {self.date}",
            f"- code: {self.code}",
        ])

    def footer(self) -> str:
        """One or two lines for the bottom of a figure."""
        seed = "n/a" if self.seed is None else str(self.seed)
        return f"{self.command}  |  seed {seed}  |  {self.date}\n{self.machine}  |  {self.code}"


def machine_description() -> str:
    """Platform, CPU model and count, memory: enough to judge a timing."""
    cpus = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cpus
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "memory unknown"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory = f"{total / 2**30:.1f} GiB memory"
    except (ValueError, OSError, AttributeError):
        pass
    cpu_text = f"{usable} CPU" if usable == cpus else f"{usable} of {cpus} CPU"
    return f"{platform.platform()}, Python {platform.python_version()}, {model}, {cpu_text}, {memory}"


def _code_version() -> str:
    try:
        package = version("fundguard")
    except PackageNotFoundError:
        package = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = "no git"
    return f"fundguard {package}, git {commit}"


def provenance(module: str, argv: Sequence[str], seed: int | None) -> Provenance:
    """Provenance of a run of ``python -m <module> <argv>`` started now."""
    command = " ".join(["python", "-m", module, *(shlex.quote(a) for a in argv)])
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Provenance(command=command, seed=seed, machine=machine_description(), date=date, code=_code_version())


def parser(prog: str, description: str, *, seed: int | None = None, data: bool = True) -> argparse.ArgumentParser:
    """The common command line: ``--quick``, ``--out DIR``, and ``--seed N`` / ``--data DIR`` when used."""
    cli = argparse.ArgumentParser(prog=prog, description=description)
    cli.add_argument("--quick", action="store_true",
                     help="small sizes (under a minute); writes <name>_quick.* so full results are never overwritten")
    cli.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help=f"output folder (default {DEFAULT_RESULTS})")
    if seed is not None:
        cli.add_argument("--seed", type=int, default=seed, help=f"root random seed (default {seed})")
    if data:
        cli.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"{DATA_HELP} (default {DEFAULT_DATA})")
    return cli


def data_available(folder: Path, files: Sequence[str] = tuple(DAILY_FILES.values())) -> list[str]:
    """The names in ``files`` missing from ``folder`` (empty when everything is there)."""
    return [name for name in files if not (Path(folder) / name).is_file()]


def _readable(path: Path) -> Path:
    # atomic_write_* go through mkstemp, which creates files 0600; results are for everyone to read.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write a result file atomically (the folder is created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return _readable(atomic_write_text(path, text))


def write_results(out: Path, stem: str, markdown: str, results: dict, prov: Provenance) -> Path:
    """``<stem>.md`` and ``<stem>.json`` (the provenance first, then ``results``) in ``out``; the .md's path."""
    write_text(out / f"{stem}.json", json.dumps({"provenance": dataclasses.asdict(prov), **results}, indent=2,
                                                default=float))
    return write_text(out / f"{stem}.md", markdown)


def save_figure(fig: plt.Figure, path: Path, prov: Provenance) -> Path:
    """Write ``fig`` as a PNG with the provenance as a footer and in the PNG metadata, then close it."""
    fig.text(0.005, 0.003, prov.footer(), fontsize=6, color="0.35", ha="left", va="bottom", family="monospace")
    buffer = io.BytesIO()
    metadata = {"Software": "fundguard benchmarks", "Description": prov.footer().replace("\n", " | "),
                "Creation Time": prov.date}
    fig.savefig(buffer, format="png", dpi=130, metadata=metadata)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _readable(atomic_write_bytes(path, buffer.getvalue()))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one character per column ("l", "r", "c")."""
    align = align or "l" + "r" * (len(header) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(x: float, digits: int = 2) -> str:
    """``x`` (a fraction) in percent with ``digits`` decimals, "n/a" when it is not finite."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def millions(x: float, unit: str = "m") -> str:
    """``x`` in millions with one decimal and ``unit``, "n/a" when it is not finite."""
    return "n/a" if not math.isfinite(x) else f"{x / 1e6:,.1f}{unit}"


def fail(message: str, code: int = 2) -> int:
    """Print ``message`` to stderr (a benchmark is a command, so it may) and return an exit code."""
    print(message, file=sys.stderr)
    return code
