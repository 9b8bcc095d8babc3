"""How long ``fundguard --help`` takes, against ``python -c pass`` in the same run.

The command line imports its work lazily (the package ``__init__`` files load their names on first
use, the command handlers import what they run), so that asking for help never loads numpy's
neighbours: cvxpy, arch, scipy, pandas, matplotlib. Each command is started ``--repeat`` times;
the table gives the median and the ratio to the bare interpreter. The target: under 1 s.

    python -m benchmarks.cli_startup [--repeat 15] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
    "fundguard --help": [sys.executable, "-m", "fundguard.optimizer.job.cli", "--help"],
    "fundguard calibrate --help": [sys.executable, "-m", "fundguard.optimizer.job.cli", "calibrate", "--help"],
    "python -c 'import fundguard.optimizer; fundguard.optimizer.solve'": [
        sys.executable, "-c", "import fundguard.optimizer as o; o.solve"],
}
TARGET_SECONDS = 1.0


def _time(command: list[str], repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - start)
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--repeat", type=int, default=15)
    cli.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = cli.parse_args(argv)
    if args.repeat < 1:
        cli.error("--repeat must be >= 1")
    rows = {}
    for _ in range(2):  # interleaved passes: a busy stretch of the machine hits every command alike
        for name, command in COMMANDS.items():
            rows.setdefault(name, []).extend(_time(command, max(args.repeat // 2, 1)))
    from . import _common

    prov = _common.provenance("benchmarks.cli_startup", [f"--repeat={args.repeat}"], None)
    base = statistics.median(rows["python -c pass"])
    lines = ["# `fundguard --help` start-up time", "",
             f"- command: `{prov.command}`", f"- machine: {prov.machine}", f"- date: {prov.date}",
             f"- code: {prov.code}", "",
             f"Median of {len(rows['python -c pass'])} starts each, interleaved, in one run "
             f"(`python -m benchmarks.cli_startup --repeat {args.repeat}`); wall seconds on this machine and the "
             "ratio to a bare interpreter.", "",
             "| command | median s | min s | x python -c pass |", "|---|---:|---:|---:|"]
    for name, runs in rows.items():
        lines.append(f"| `{name}` | {statistics.median(runs):.3f} | {min(runs):.3f} | "
                     f"{statistics.median(runs) / base:.1f} |")
    help_time = statistics.median(rows["fundguard --help"])
    lines += ["", f"`fundguard --help`: {help_time:.2f} s, {'within' if help_time < TARGET_SECONDS else 'ABOVE'} "
              f"the {TARGET_SECONDS:.0f} s target. The last row is what the first use of the library costs "
              "(cvxpy, scipy, arch, pandas load then).", ""]
    _common.write_results(args.out, "cli_startup", "\n".join(lines), {
        "seconds": rows, "median": {k: statistics.median(v) for k, v in rows.items()},
        "target_seconds": TARGET_SECONDS}, prov)
    print("\n".join(lines))
    return 0 if help_time < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
