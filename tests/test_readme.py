"""The README's examples run as written (keeps the README true as the project grows)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _heredoc_examples() -> list[str]:
    return re.findall(r"python - <<'EOF'\n(.*?)\nEOF\n", README.read_text(), flags=re.S)


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "pip install . && fundguard calibrate" in text
    assert 'pip install -e ".[test,dask,scs]" && pytest' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[test,dask,scs]" && pytest' in ci


def test_readme_python_example_recovers_the_simulated_model():
    examples = _heredoc_examples()
    assert examples, "the README lost its runnable example"
    out = subprocess.run([sys.executable, "-c", examples[0]], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.splitlines()[0].startswith("GJR-t")  # BIC finds the generating family
    assert "persistence 0.9" in out


def test_readme_scenario_example_on_real_data(shared_data):
    text = README.read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "simulate_returns" in b and "btc_daily.csv" in b)
    code = block.replace("btc_daily.csv", str(shared_data / "binance_BTCUSDT_daily.csv")).replace(
        "eth_daily.csv", str(shared_data / "binance_ETHUSDT_daily.csv")
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    quantiles = [float(line.rsplit(":", 1)[1].replace(",", "")) for line in out.splitlines()]
    assert len(quantiles) == 3 and 0 < quantiles[0] < quantiles[1] < quantiles[2]


def test_readme_config_example_is_valid(tmp_path):
    from fundguard.optimizer.job.config import load_config

    block = next(b for b in re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S) if "[[markets]]" in b)
    (tmp_path / "data").mkdir()
    for name in ("btc_daily.csv", "eth_daily.csv"):
        (tmp_path / "data" / name).write_text("date,close\n")
    path = tmp_path / "fund.toml"
    path.write_text(block)
    cfg = load_config(path)
    assert cfg.market_names == ("BTC", "ETH") and cfg.problem.method == "certified"
    assert cfg.scenarios.stress_dates == ("2020-03-12", "2021-05-19", "2022-11-08")


@pytest.mark.slow
def test_readme_distributed_example_runs(tmp_path):
    # The README's Dask example, as written but with 20,000 scenarios instead of 1,000,000.
    pytest.importorskip("distributed")
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "chunked_scenarios" in b)
    assert block.count("1_000_000") == 2
    script = tmp_path / "example.py"
    script.write_text(block.replace("1_000_000", "20_000"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    fund, certificate = done.stdout.strip().split(" ", 1)
    assert float(fund) > 0 and "Certificate(" in certificate and "n=20000" in certificate


def test_readme_points_only_inside_the_repository():
    """A user's clone has nothing beside it: every local link resolves inside the repository."""
    text = README.read_text()
    root = README.parent
    links = [target for target in re.findall(r"\]\(([^)]+)\)", text) if "://" not in target]
    assert "docs/design.md" in links
    for target in links:
        assert (root / target.split("#")[0]).resolve().is_relative_to(root), target
        assert (root / target.split("#")[0]).exists(), target
    assert "../" not in text and "shared folder" not in text and "DESIGN.md" not in text


def test_readme_certified_example_certifies_alpha():
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "fresh=lambda" in b)
    out = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=600, check=True).stdout
    found = re.fullmatch(r"fund ([\d,]+): (\d+) ruins in ([\d,]+) fresh scenarios, P\(ruin\) <= ([\d.]+)%\n", out)
    assert found, out
    fund, ruins, n, bound = (float(found.group(i).replace(",", "")) for i in range(1, 5))
    assert fund > 0 and n >= 459 and ruins < 0.01 * n and bound <= 1.0
