"""Tests of the calibration config (fundguard.optimizer.job.config): every key checked, errors cite key and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fundguard.models.errors import ConfigError
from fundguard.optimizer.job.config import load_config, parse_config

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
        ("open_interest = 5e8", "open_interest = -5e8", 37, "markets[1].open_interest must be > 0"),
        ("open_interest = 5e8", "open_interest = 0", 37, "markets[1].open_interest must be > 0, got 0"),
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
        ("seed = 3", 'seed = 3\ndtype = "float16"', 9, "scenarios.dtype must be one of float64, float32"),
    ],
    ids=["missing", "unknown", "type", "negative-oi", "zero-oi", "alpha-0", "missing-file", "leverage", "mm", "shares",
         "innovations", "spec", "method", "per-market", "date", "shock", "duplicate", "dtype"],
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


# Every numeric key of the schema, as (section header or None for the first market, key); the
# value is appended under that header so that the error must cite the appended line.
_FLOAT_KEYS = [("[problem]", k) for k in ("alpha", "cost_of_capital", "premium_weight", "premium_min", "premium_max",
                                           "fund_max", "floor", "rate_change_penalty", "confidence")]
_FLOAT_KEYS += [("[[markets]]", k) for k in ("open_interest", "daily_volume", "impact", "gap", "current_rate")]
_FLOAT_KEYS += [("[[markets.tiers]]", k) for k in ("share", "leverage", "maintenance_margin")]
_INT_KEYS = [("[scenarios]", k) for k in ("n_scenarios", "horizon", "seed", "chunk_size", "stress_window",
                                           "certify_scenarios")] + [("[volatility]", "lookback")]


def _numeric_config(header: str, key: str, literal: str) -> tuple[str, int, str]:
    """A minimal valid config with ``key = literal`` as the last line of ``header``'s table; (text, line, dotted key)."""
    base = {"[problem]": "", "[scenarios]": "", "[volatility]": ""}
    market = {"name": '"X"', "open_interest": "1e9", "daily_volume": "3e9"}
    tier = {"share": "1.0", "leverage": "10", "maintenance_margin": "0.01"}
    lines: list[str] = []
    target = None
    for section in ("[volatility]", "[scenarios]", "[problem]"):
        lines.append(section)
        if section == header:
            lines.append(f"{key} = {literal}")
            target = len(lines)
        lines.append(base[section])
    lines.append("[[markets]]")
    for k, v in market.items():
        if header == "[[markets]]" and k == key:
            continue
        lines.append(f"{k} = {v}")
    if header == "[[markets]]":
        lines.append(f"{key} = {literal}")
        target = len(lines)
    lines.append("[[markets.tiers]]")
    for k, v in tier.items():
        if header == "[[markets.tiers]]" and k == key:
            continue
        lines.append(f"{k} = {v}")
    if header == "[[markets.tiers]]":
        lines.append(f"{key} = {literal}")
        target = len(lines)
    dotted = {"[[markets]]": "markets[0]", "[[markets.tiers]]": "markets[0].tiers[0]"}.get(header, header.strip("[]"))
    return "\n".join(lines) + "\n", target, f"{dotted}.{key}"


@pytest.mark.parametrize("literal", ["inf", "-inf", "nan", "+inf"])
@pytest.mark.parametrize(("header", "key"), _FLOAT_KEYS, ids=[k for _, k in _FLOAT_KEYS])
def test_every_float_key_refuses_inf_and_nan_with_its_line(tmp_path, header, key, literal):
    text, line, dotted = _numeric_config(header, key, literal)
    path = tmp_path / "fund.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: {dotted} must be a finite number, got "), message
    assert "\n" not in message


@pytest.mark.parametrize("literal", ["inf", "nan", "2.5"])
@pytest.mark.parametrize(("header", "key"), _INT_KEYS, ids=[k for _, k in _INT_KEYS])
def test_every_integer_key_refuses_non_integers_with_its_line(tmp_path, header, key, literal):
    text, line, dotted = _numeric_config(header, key, literal)
    path = tmp_path / "fund.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:{line}: {dotted} must be an integer, got float "), str(info.value)


def test_the_minimal_numeric_config_is_valid(tmp_path):
    # the helper's base config parses, so the failures above are due to the one changed key
    text, _, _ = _numeric_config("[problem]", "alpha", "0.02")
    path = tmp_path / "fund.toml"
    path.write_text(text)
    assert load_config(path).problem.alpha == 0.02


def test_integral_floats_are_accepted_for_integer_keys(config_dir):
    text = GOOD.format(prices="btc.csv").replace("n_scenarios = 5000", "n_scenarios = 1e4")
    cfg = load_config(write(config_dir, text))
    assert cfg.scenarios.n_scenarios == 10_000 and isinstance(cfg.scenarios.n_scenarios, int)


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("cost_of_capital = 0.08", "cost_of_capital = 0.08\npremium_min = 0.5", 15,
         "problem.premium_min 0.5 is above problem.premium_max 0.001 for market 'BTC'"),
        ("ETH = 0.002", "ETH = 1.5", 15, "problem.premium_max.ETH must be a premium rate in [0, 1]"),
        ("premium_max = {{ BTC = 0.001, ETH = 0.002 }}", "premium_max = 1.25", 15,
         "problem.premium_max must be a premium rate in [0, 1] (a fraction: 0.0125 for 1.25%), got 1.25"),
        ("current_rate = 0.0002", "current_rate = 2.0", 23, "markets[0].current_rate must be a premium rate in [0, 1]"),
        ('stress_dates = ["2020-03-12"]', 'stress_dates = ["2020-03-12", "2021-02-30"]', 9,
         "scenarios.stress_dates[1] is not a calendar date: '2021-02-30'"),
        ('stress_dates = ["2020-03-12"]', 'stress_dates = ["2020-03-12T25:00"]', 9,
         "scenarios.stress_dates[0] is not a calendar date"),
        ("shocks = [-0.3]", "shocks = [nan]", 10, "shocks[0] must be a non-zero simple return"),
    ],
    ids=["min-above-max", "per-market-above-1", "rate-in-percent", "current-rate", "feb-30", "hour-25", "shock-nan"],
)
def test_rates_and_dates_out_of_their_domain(config_dir, old, new, line, fragment):
    text = GOOD.format(prices="btc.csv")
    assert old.replace("{{", "{").replace("}}", "}") in text
    path = write(config_dir, text.replace(old.replace("{{", "{").replace("}}", "}"), new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and fragment in message, message
