"""The worked example (examples/worked_example.py) runs end to end in CI and its own checks hold:
the numpy ruin count equals certify's, the independent ruin rate meets alpha up to sampling
error, the frontier is monotone and the fund a plausible share of open interest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "worked_example.py"


def test_the_worked_example_runs_and_its_checks_hold(tmp_path):
    run = subprocess.run([sys.executable, str(EXAMPLE), "--scenarios", "4000", "--out", str(tmp_path / "prices")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    out = run.stdout
    assert out.count("ok: ") == 4 and "FAILED" not in out
    assert re.search(r"^fund target\s+[\d.]+[km]? USD", out, re.M)
    share = float(re.search(r"share of open interest: ([\d.]+)%", out).group(1))
    assert 0.1 < share < 10.0, share  # real funds hold roughly 1-5 % of open interest
    vols = [float(v) for v in re.findall(r"today's daily vol ([\d.]+)%", out)]
    assert len(vols) == 2 and all(1.0 < v < 10.0 for v in vols), vols  # the generator's 3 % and 4 % a day
    assert sorted(p.name for p in (tmp_path / "prices").iterdir()) == ["aaa_daily.csv", "bbb_daily.csv"]
