"""Tests of the calibration config (fundguard.optimizer.config): every key checked, errors cite key and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fundguard.models.errors import ConfigError
from fundguard.optimizer.config import load_config, parse_config

GOOD = """\
[volatility]
spec = "GJR-t"

[scenarios]
n_scenarios = 5000
horizon = 10
innovations = "evt"
seed = 3
stress_dates = ["2020-03-12"]
shocks = [-0.3]

[problem]
alpha = 0.01
cost_of_capital = 0.08
premium_max = {{ BTC = 0.001, ETH = 0.002 }}
method = "exact"

[[markets]]
name = "BTC"
prices = "{prices}"
open_interest = 1e9
daily_volume = 2e10
current_rate = 0.0002

[[markets.tiers]]
share = 0.6
leverage = 10
maintenance_margin = 0.005

[[markets.tiers]]
share = 0.4
leverage = 50
maintenance_margin = 0.01

[[markets]]
name = "ETH"
open_interest = 5e8
daily_volume = 1e10
premium_kind = "volume"
"""


@pytest.fixture()
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "btc.csv").write_text("date,close\n2020-01-01,1\n")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "fund.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_parses(config_dir):
    cfg = load_config(write(config_dir, GOOD.format(prices="btc.csv")))
    assert cfg.market_names == ("BTC", "ETH")
    btc, eth = cfg.markets
    assert btc.prices == (config_dir / "btc.csv").resolve() and eth.prices is None
    assert [t.leverage for t in btc.tiers] == [10.0, 50.0] and eth.tiers is None
    assert cfg.problem.premium_max == {"BTC": 0.001, "ETH": 0.002}
    assert cfg.scenarios.stress_dates == ("2020-03-12",) and cfg.scenarios.shocks == (-0.3,)
    assert cfg.volatility.spec == "GJR-t" and cfg.problem.method == "exact"
    assert len(cfg.digest) == 64


def test_digest_depends_on_content_not_layout(config_dir):
    a = load_config(write(config_dir, GOOD.format(prices="btc.csv")))
    b = load_config(write(config_dir, GOOD.format(prices="btc.csv").replace("seed = 3", "seed   =   3")))
    c = load_config(write(config_dir, GOOD.format(prices="btc.csv").replace("seed = 3", "seed = 4")))
    assert a.digest == b.digest != c.digest


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ('name = "ETH"\n', "", None, "missing required key 'markets[1].name'"),
        ("horizon = 10", "horizon = 10\nhorizn = 3", 7, "unknown key 'scenarios.horizn'"),
        ("seed = 3", 'seed = "three"', 8, "scenarios.seed must be an integer, got str"),
        ("open_interest = 5e8", "open_interest = -5e8", 37, "markets[1].open_interest must be >= 0"),
        ("alpha = 0.01", "alpha = 0", 13, "problem.alpha must be strictly between 0 and 1"),
        ('prices = "btc.csv"', 'prices = "nope.csv"', 20, "nope.csv' does not exist"),
        ("leverage = 50", "leverage = 0.5", 32, "markets[0].tiers[1].leverage must be >= 1"),
        ("maintenance_margin = 0.01", "maintenance_margin = 0.03", 33, "below the initial margin"),
        ("share = 0.4", "share = 0.3", None, "shares must sum to 1"),
        ('innovations = "evt"', 'innovations = "bootstrap"', 7, "must be one of parametric, fhs, evt"),
        ('spec = "GJR-t"', 'spec = "GJR"', 2, "VOL-DIST"),
        ('method = "exact"', 'method = "magic"', 16, "problem.method must be one of"),
        ("ETH = 0.002", "SOL = 0.002", 15, "unknown ['SOL'], missing ['ETH']"),
        ('stress_dates = ["2020-03-12"]', 'stress_dates = ["March 12"]', 9, "stress_dates[0] must be a date"),
        ("shocks = [-0.3]", "shocks = [-1.5]", 10, "shocks[0] must be a non-zero simple return"),
        ('name = "ETH"', 'name = "BTC"', None, "repeated: ['BTC']"),
    ],
    ids=["missing", "unknown", "type", "negative-oi", "alpha-0", "missing-file", "leverage", "mm", "shares",
         "innovations", "spec", "method", "per-market", "date", "shock", "duplicate"],
)
def test_bad_configs_name_key_and_line(config_dir, old, new, line, fragment):
    text = GOOD.format(prices="btc.csv")
    assert old in text
    path = write(config_dir, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert fragment in message
    assert message.startswith(str(path))
    if line is not None:
        assert message.startswith(f"{path}:{line}:"), message
    assert "\n" not in message


def test_invalid_toml_and_missing_file(config_dir):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(config_dir, "[problem\nalpha = 1"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_dir / "absent.toml")


def test_dict_config_needs_markets():
    with pytest.raises(ConfigError, match="missing required key 'markets'"):
        parse_config({"problem": {"alpha": 0.05}})
    cfg = parse_config({"markets": [{"name": "X", "open_interest": 1, "daily_volume": 2}]})
    assert cfg.source is None and cfg.problem.alpha == 0.01
