"""Shared test fixtures: the location of the real market data (never part of the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run ("ci", the default), so a run of main is
# reproducible and a red CI is a real regression, not a new random draw; set
# HYPOTHESIS_PROFILE=explore to search fresh examples (and keep any failure as a regression test).
settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Real market data is never part of the repository: FUNDGUARD_DATA names a folder of price files;
# the project's own checkouts have it beside them (<parent>/main and <parent>/shared/data).
SHARED_DATA = Path(os.environ.get("FUNDGUARD_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real market data; skips the test when it is absent (a user's fresh clone)."""
    if not (SHARED_DATA / "binance_BTCUSDT_daily.csv").is_file():
        pytest.skip(f"real market data not found at {SHARED_DATA} (set FUNDGUARD_DATA to a folder of Binance-format price files)")
    return SHARED_DATA


_BAD_INPUT_CASES: set[str] = set()


@pytest.fixture(scope="session")
def bad_input_cases() -> set[str]:
    """Names of the distinct bad-input cases exercised (reported at the end of the run)."""
    return _BAD_INPUT_CASES


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    if _BAD_INPUT_CASES:
        terminalreporter.write_line(f"fundguard: {len(_BAD_INPUT_CASES)} distinct bad-input cases rejected with clear errors")
