"""Helpers several test modules use (imported as ``from _shared import ...``; pytest puts tests/ on the path)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def two_market_price_files(folder: Path) -> dict[str, Path]:
    """Daily closes of two markets AAA and BBB, 1,200 days of GARCH-t returns (about 4% a day, like a
    crypto market) with a common Student-t factor; CSV files in ``folder``."""
    from arch.univariate import GARCH, ConstantMean, StudentsT

    rng = np.random.default_rng(0)
    common = rng.standard_t(5, 1200)
    files = {}
    for i, name in enumerate(("AAA", "BBB")):
        model = ConstantMean(None)
        model.volatility = GARCH(1, 1, 1)
        model.distribution = StudentsT(seed=np.random.default_rng(10 + i))
        returns = model.simulate([0.0, 0.8, 0.05, 0.1, 0.85, 5.0], 1200, burn=300).data.to_numpy() / 100
        returns = 0.6 * returns + 0.4 * common * returns.std() / common.std()
        dates = pd.date_range("2021-01-01", periods=1200, freq="D").strftime("%Y-%m-%d")
        files[name] = folder / f"{name.lower()}.csv"
        pd.DataFrame({"date": dates, "close": 100 * np.exp(np.cumsum(returns))}).to_csv(files[name], index=False)
    return files


def benchmarks_status() -> str | None:
    """``git status --porcelain`` of benchmarks/, untracked files included; None without git."""
    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "benchmarks"],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
