"""Calibration config: one TOML file (or a dict) describing a complete calibration.

Every key is checked: a missing required key, an unknown key, a wrong type or an out-of-range
value raises :class:`~fundguard.models.errors.ConfigError` with the key's dotted path and, when
read from a file, its line (``config.toml:12: markets[0].open_interest must be > 0, got -5``).
Every number must be finite (TOML's ``inf`` and ``nan`` are refused for every key), premium
rates are fractions in [0, 1], and dates must exist on the calendar.

Layout (every section optional except ``[[markets]]``; see the README for an annotated example)::

    [volatility]   spec, lookback
    [scenarios]    n_scenarios, horizon, innovations, seed, chunk_size, stress_dates,
                   stress_window, stress_scale, shocks, certify_scenarios, dtype
    [problem]      alpha, cost_of_capital, premium_weight, premium_min, premium_max, fund_max,
                   floor, rate_change_penalty, method, confidence, participation_elasticity,
                   trader_weight
    [compute]      scheduler, workers, chunk_size, force_workers   (distributed mode; needs fundguard[dask])
    [[markets]]    name, prices, column, strict_prices, open_interest, daily_volume, impact, gap,
                   premium_kind, current_rate, trading_fee, [[markets.tiers]] share, leverage,
                   maintenance_margin

Paths in ``prices`` are relative to the config file's folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fundguard.models import VolSpec
from fundguard.models.errors import ConfigError, FundguardError, SpecificationError
from fundguard.models.scenarioset import STORE_DTYPES
from fundguard.models.venue import LOSS_MODELS, MAX_OI_PER_ADV
from fundguard.models.venue import loss_model as named_loss_model

from ..methods import METHODS
from ..ruin import RuinRule
from ..waterfall import ALLOCATION_RULES
from .outputs import json_safe

__all__ = [
    "CalibrationConfig",
    "ComputeConfig",
    "MarketConfig",
    "VenueConfig",
    "ProblemConfig",
    "ScenarioConfig",
    "TierConfig",
    "VolatilityConfig",
    "config_where",
    "load_config",
    "parse_config",
    "parse_vol_spec",
]

INNOVATIONS = ("parametric", "fhs", "evt")
PREMIUM_KINDS = ("liquidation", "volume")
STRESS_SCALES = ("none", "volatility")


@dataclass(frozen=True)
class TierConfig:
    """One leverage tier: ``share`` of open interest (0..1], ``leverage`` >= 1, ``maintenance_margin`` in [0, 1/leverage)."""

    share: float
    leverage: float
    maintenance_margin: float


@dataclass(frozen=True)
class MarketConfig:
    """One market of the venue's book and where its prices come from.

    ``open_interest`` and ``daily_volume`` are notional per side in currency units; ``prices``
    is a CSV/Parquet path (None: use the built-in preset's model of this market); ``current_rate``
    is today's premium rate (a fraction of the premium base), used for ``check``, as the
    previous rate of the rate-change penalty and as the rate at which the book was observed
    (participation's reference); ``trading_fee`` the venue's trading fee per unit notional traded
    (default 0.035%: Binance USD-M's regular 0.02% maker / 0.05% taker, half each). ``tiers``/``impact``/``gap`` None take the loss
    model's documented defaults. ``strict_prices`` makes a one-period price move beyond
    ``fundguard.models.data.MAX_LOG_RETURN`` (a probable bad print) an error instead of a warning.
    """

    name: str
    open_interest: float
    daily_volume: float
    prices: Path | None = None
    column: str | None = None
    impact: float | None = None
    gap: float | None = None
    premium_kind: str = "liquidation"
    current_rate: float = 0.0
    trading_fee: float = 0.00035
    tiers: tuple[TierConfig, ...] | None = None
    strict_prices: bool = False


@dataclass(frozen=True)
class VenueConfig:
    """``loss_model``: a name of ``fundguard.models.LOSS_MODELS`` ("stateful_book", the default, or
    "liquidation_gap", the first model, kept for comparison) or a ``loss_model.json`` written by
    ``fundguard loss-fit`` (a path relative to the config file). ``currency``: the unit every
    money figure is in (open interest, volume, fund target, costs): a label on the report and the
    plots, default "USD" (venues quote open interest and their funds in USD or USDT)."""

    loss_model: str = "stateful_book"
    currency: str = "USD"


@dataclass(frozen=True)
class VolatilityConfig:
    """``spec``: "auto" or VOL-DIST (e.g. "GJR-t"); ``lookback``: trailing returns used for the fit (None: all)."""

    spec: str = "auto"
    lookback: int | None = None


@dataclass(frozen=True)
class ScenarioConfig:
    """Scenario settings.

    ``n_scenarios`` random scenarios for the optimizer, ``horizon`` periods each, ``innovations``
    one of parametric/fhs/evt, ``seed`` for every random draw, ``chunk_size`` scenarios per
    generation chunk (None: automatic), ``stress_dates`` historical dates whose following
    ``stress_window`` periods are replayed (scaled to today's volatility when
    ``stress_scale="volatility"``), ``shocks`` instantaneous moves (e.g. -0.3 for -30%) applied to
    every market, ``certify_scenarios`` fresh scenarios for the out-of-sample certificate,
    ``dtype`` how the scenario sets are stored ("float32" halves their memory; sums stay in
    float64: ``fundguard.models.ScenarioSet``).
    """

    n_scenarios: int = 20_000
    horizon: int = 30
    innovations: str = "fhs"
    seed: int = 20_261_125
    chunk_size: int | None = None
    stress_dates: tuple[str, ...] = ()
    stress_window: int = 7
    stress_scale: str = "none"
    shocks: tuple[float, ...] = ()
    certify_scenarios: int = 100_000
    dtype: str = "float64"


@dataclass(frozen=True)
class ProblemConfig:
    """The policy problem (see ``PolicyProblem``) plus the method and the certificate confidence.

    Scalars apply to every market; ``premium_min``/``premium_max``/``premium_weight`` may also be
    tables keyed by market name. ``participation_elasticity`` (default 1.0; 0 turns it off) and
    ``trader_weight`` set the book's answer to the fees (``fundguard.optimizer.participation``):
    the fee's cost is then derived from it, unless ``premium_weight`` is set above 0, which then
    prices the fees instead (the explicit override).
    """

    alpha: float = 0.01
    cost_of_capital: float = 0.10
    premium_weight: float | Mapping[str, float] = 0.0
    premium_min: float | Mapping[str, float] = 0.0
    premium_max: float | Mapping[str, float] = 0.01
    fund_max: float | None = None
    floor: float = 0.0
    rate_change_penalty: float = 0.0
    method: str = "certified"
    confidence: float = 0.99
    participation_elasticity: float = 1.0
    trader_weight: float = 0.0
    ruin: Mapping[str, Any] | None = None
    expected_shortfall_max: float | None = None
    shortfall_cvar_max: float | None = None
    shortfall_cvar_level: float = 0.99


@dataclass(frozen=True)
class ComputeConfig:
    """Where the heavy passes run (``[compute]``; the distributed mode needs ``fundguard[dask]``).

    ``scheduler``: address of an existing Dask scheduler (``"tcp://host:8786"``); ``workers``: else
    start a local cluster of that many worker processes for the run; neither: run in memory, in
    this process. ``chunk_size``: scenarios per chunk on the workers (rounded up to whole blocks
    of 1024; default about 64 MiB a chunk). ``force_workers``: start a local cluster of more
    workers than the stated multiple of this machine's CPUs (refused otherwise, see
    :func:`~fundguard.optimizer.job.compute.check_workers`). None of them changes the numbers, so
    they are not part of the config digest.
    """

    scheduler: str | None = None
    workers: int | None = None
    chunk_size: int | None = None
    force_workers: bool = False

    @property
    def distributed(self) -> bool:
        """True when the run uses Dask (a scheduler address or a worker count is set)."""
        return self.scheduler is not None or self.workers is not None


@dataclass(frozen=True)
class WaterfallConfig:
    """What comes after the fund (``[waterfall]``, ``fundguard.optimizer.waterfall``): ``layers``
    ((name, size) in order, ``[[waterfall.layers]]``), then ADL by ``allocation`` ("queue",
    "min_overshoot" or "pro_rata"), the queue closing whole accounts of ``accounts`` per cohort."""

    layers: tuple[tuple[str, float], ...] = ()
    allocation: str = "queue"
    accounts: int = 100


@dataclass(frozen=True)
class FundConfig:
    """One fund of the topology (``[[funds]]``): a name and the markets it covers. Together the
    funds must name every market exactly once (``fundguard.optimizer.topology``)."""

    name: str
    markets: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationConfig:
    """A whole calibration; ``source`` is the file it came from (None for a dict), ``digest`` the SHA-256 of its canonical JSON."""

    markets: tuple[MarketConfig, ...]
    volatility: VolatilityConfig = field(default_factory=VolatilityConfig)
    scenarios: ScenarioConfig = field(default_factory=ScenarioConfig)
    problem: ProblemConfig = field(default_factory=ProblemConfig)
    source: Path | None = None
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    digest: str = ""
    venue: VenueConfig = field(default_factory=VenueConfig)
    waterfall: WaterfallConfig = field(default_factory=WaterfallConfig)
    funds: tuple[FundConfig, ...] = ()

    @property
    def market_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.markets)


def load_config(path: str | Path) -> CalibrationConfig:
    """Read and validate a TOML calibration file (errors name the key and its line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(raw, source=path, text=text)


def parse_config(raw: Mapping[str, Any], *, source: Path | None = None, text: str | None = None) -> CalibrationConfig:
    """Validate a config mapping (as read from TOML) into a :class:`CalibrationConfig`."""
    ctx = _Context(source, text)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config must be a table/mapping, got {type(raw).__name__}")
    ctx.no_unknown(raw, ("venue", "volatility", "scenarios", "problem", "compute", "markets", "waterfall", "funds"),
                   "")
    base = source.parent if source is not None else Path.cwd()

    venue = ctx.section(raw, "venue", {"loss_model": (str, _nonempty), "currency": (str, _currency)})
    if "loss_model" in venue:
        venue["loss_model"] = _loss_model_name(ctx, venue["loss_model"], base)
    vol = ctx.section(raw, "volatility", {
        "spec": (str, _check_spec),
        "lookback": (int, _at_least(250)),
    })
    scen = ctx.section(raw, "scenarios", {
        "n_scenarios": (int, _at_least(100)),
        "horizon": (int, _at_least(1)),
        "innovations": (str, _one_of(INNOVATIONS)),
        "seed": (int, _at_least(0)),
        "chunk_size": (int, _at_least(1)),
        "stress_dates": (list, _dates),
        "stress_window": (int, _at_least(1)),
        "stress_scale": (str, _one_of(STRESS_SCALES)),
        "shocks": (list, _shocks),
        "certify_scenarios": (int, _at_least(100)),
        "dtype": (str, _one_of(STORE_DTYPES)),
    })
    prob = ctx.section(raw, "problem", {
        "alpha": (float, _open_interval(0.0, 1.0)),
        "cost_of_capital": (float, _at_least(0.0)),
        "premium_weight": ((float, dict), _per_market_nonneg),
        "premium_min": ((float, dict), _per_market_rate),
        "premium_max": ((float, dict), _per_market_rate),
        "fund_max": (float, _greater(0.0)),
        "floor": (float, _finite),
        "rate_change_penalty": (float, _at_least(0.0)),
        "method": (str, _one_of(tuple(METHODS))),
        "confidence": (float, _open_interval(0.0, 1.0)),
        "participation_elasticity": (float, _elasticity),
        "trader_weight": (float, _closed_unit),
        "ruin": (dict, _ruin_rule),
        "expected_shortfall_max": (float, _at_least(0.0)),
        "shortfall_cvar_max": (float, _at_least(0.0)),
        "shortfall_cvar_level": (float, _open_interval(0.0, 1.0)),
    })
    compute = ctx.section(raw, "compute", {
        "scheduler": (str, _scheduler_address),
        "workers": (int, _at_least(1)),
        "chunk_size": (int, _at_least(1)),
        "force_workers": (bool, None),
    })

    if "markets" not in raw:
        raise ConfigError(ctx.where("markets", "missing required key 'markets' (at least one [[markets]] table)"))
    if not isinstance(raw["markets"], list) or not raw["markets"]:
        raise ConfigError(ctx.where("markets", "markets must be a non-empty array of tables ([[markets]])"))
    markets = []
    for i, entry in enumerate(raw["markets"]):
        path = f"markets[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(ctx.where(path, f"{path} must be a table"))
        fields = ctx.fields(entry, path, {
            "name": (str, _market_name),
            "prices": (str, _nonempty),
            "column": (str, _nonempty),
            "strict_prices": (bool, None),
            "open_interest": (float, _greater(0.0)),
            "daily_volume": (float, _greater(0.0)),
            "impact": (float, _at_least(0.0)),
            "gap": (float, _at_least(0.0)),
            "premium_kind": (str, _one_of(PREMIUM_KINDS)),
            "current_rate": (float, _rate),
            "trading_fee": (float, _rate),
            "tiers": (list, None),
        }, required=("name", "open_interest", "daily_volume"))
        tiers = None
        if "tiers" in fields:
            tiers = tuple(_tier(ctx, t, f"{path}.tiers[{k}]") for k, t in enumerate(fields.pop("tiers")))
            if not tiers:
                raise ConfigError(ctx.where(f"{path}.tiers", f"{path}.tiers must not be empty (omit it for the default ladder)"))
            total = sum(t.share for t in tiers)
            if abs(total - 1.0) > 1e-6:
                raise ConfigError(ctx.where(f"{path}.tiers", f"{path}.tiers shares must sum to 1, got {total:.6g}"))
        if "prices" in fields:
            resolved = (base / fields["prices"]).resolve()
            if not resolved.is_file():
                raise ConfigError(ctx.where(f"{path}.prices", f"{path}.prices: file {str(resolved)!r} does not exist"))
            fields["prices"] = resolved
        if "open_interest" in fields and fields["open_interest"] > MAX_OI_PER_ADV * fields["daily_volume"]:
            raise ConfigError(ctx.where(f"{path}.daily_volume", (
                f"{path}.daily_volume = {fields['daily_volume']!r} is implausibly small for open_interest = "
                f"{fields['open_interest']!r} (at least open_interest / {MAX_OI_PER_ADV:g}; a units slip?)")))
        markets.append(MarketConfig(tiers=tiers, **fields))
    names = [m.name for m in markets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(ctx.where("markets", f"market names must be unique; repeated: {duplicates}"))
    for key in ("premium_weight", "premium_min", "premium_max"):
        value = prob.get(key)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            missing = sorted(set(names) - set(value))
            if unknown or missing:
                raise ConfigError(ctx.where(f"problem.{key}", f"problem.{key} must name every market exactly: unknown {unknown}, missing {missing}"))
    low, high = prob.get("premium_min", ProblemConfig.premium_min), prob.get("premium_max", ProblemConfig.premium_max)
    for name in names:
        lo = low[name] if isinstance(low, Mapping) else low
        hi = high[name] if isinstance(high, Mapping) else high
        if lo > hi:
            key = "premium_min" if "premium_min" in prob else "premium_max"
            raise ConfigError(ctx.where(f"problem.{key}", f"problem.premium_min {lo:g} is above problem.premium_max "
                                                          f"{hi:g} for market {name!r}"))
    waterfall = _waterfall(ctx, raw)
    funds = _funds(ctx, raw, names)
    scen = {k: tuple(v) if isinstance(v, list) else v for k, v in scen.items()}
    # [compute] says where to run, not what: it never changes the numbers, so it is not digested
    canonical = json.dumps(json_safe({k: v for k, v in raw.items() if k != "compute"}), sort_keys=True,
                           separators=(",", ":"))
    return CalibrationConfig(
        markets=tuple(markets),
        volatility=VolatilityConfig(**vol),
        scenarios=ScenarioConfig(**scen),
        problem=ProblemConfig(**prob),
        compute=ComputeConfig(**compute),
        venue=VenueConfig(**venue),
        source=source,
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
        waterfall=waterfall,
        funds=funds,
    )


def _waterfall(ctx: _Context, raw: Mapping[str, Any]) -> WaterfallConfig:
    table = raw.get("waterfall", {})
    if not isinstance(table, Mapping):
        raise ConfigError(ctx.where("waterfall", "waterfall must be a table ([waterfall])"))
    fields = ctx.fields(table, "waterfall", {
        "allocation": (str, _one_of(ALLOCATION_RULES)),
        "accounts": (int, _at_least(1)),
        "layers": (list, None),
    }, required=())
    layers = []
    for k, entry in enumerate(fields.pop("layers", [])):
        path = f"waterfall.layers[{k}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(ctx.where(path, f"{path} must be a table ([[waterfall.layers]])"))
        layer = ctx.fields(entry, path, {"name": (str, _nonempty), "size": (float, _at_least(0.0))},
                           required=("name", "size"))
        layers.append((layer["name"], layer["size"]))
    repeated = sorted({n for n, _ in layers if [m for m, _ in layers].count(n) > 1})
    if repeated:
        raise ConfigError(ctx.where("waterfall.layers", f"waterfall.layers names must be unique; repeated: {repeated}"))
    return WaterfallConfig(layers=tuple(layers), **fields)


def _funds(ctx: _Context, raw: Mapping[str, Any], names: list[str]) -> tuple[FundConfig, ...]:
    if "funds" not in raw:
        return ()
    entries = raw["funds"]
    if not isinstance(entries, list) or not entries:
        raise ConfigError(ctx.where("funds", "funds must be a non-empty array of tables ([[funds]])"))
    funds = []
    for k, entry in enumerate(entries):
        path = f"funds[{k}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(ctx.where(path, f"{path} must be a table ([[funds]])"))
        fund = ctx.fields(entry, path, {"name": (str, _nonempty), "markets": (list, None)},
                          required=("name", "markets"))
        markets = fund["markets"]
        if not markets or not all(isinstance(m, str) for m in markets):
            raise ConfigError(ctx.where(f"{path}.markets", f"{path}.markets must be a non-empty list of market names"))
        unknown = [m for m in markets if m not in names]
        if unknown:
            raise ConfigError(ctx.where(f"{path}.markets", f"{path}.markets names unknown market(s) {unknown}; the "
                                                            f"config's markets are {names}"))
        funds.append(FundConfig(fund["name"], tuple(markets)))
    listed = [m for f in funds for m in f.markets]
    repeated = sorted({m for m in listed if listed.count(m) > 1})
    missing = [m for m in names if m not in listed]
    if repeated or missing:
        raise ConfigError(ctx.where("funds", f"funds must cover every market exactly once: repeated {repeated}, "
                                             f"missing {missing}"))
    fund_names = [f.name for f in funds]
    if len(set(fund_names)) != len(fund_names):
        raise ConfigError(ctx.where("funds", f"funds names must be unique, got {fund_names}"))
    return tuple(funds)


def _loss_model_name(ctx: _Context, name: str, base: Path) -> str:
    """A known loss model's name, or the resolved path of a loss_model.json that loads."""
    if name.lower().endswith(".json"):
        resolved = (base / name).resolve()
        try:
            named_loss_model(str(resolved))
        except SpecificationError as exc:
            raise ConfigError(ctx.where("venue.loss_model", f"venue.loss_model: {exc}")) from None
        return str(resolved)
    if name not in LOSS_MODELS:
        raise ConfigError(ctx.where("venue.loss_model", f"venue.loss_model must be one of {sorted(LOSS_MODELS)} or a "
                                                        f"loss_model.json file, got {name!r}"))
    return name


def config_where(cfg: CalibrationConfig, dotted: str, message: str) -> str:
    """``message`` prefixed with ``file:line`` of key ``dotted`` in the file ``cfg`` was read from.

    For errors found after loading (a run too large for this machine): the file is read again
    to find the line; a config from a mapping, or a file no longer readable, gives the message
    alone or with the file name.
    """
    if cfg.source is None:
        return message
    try:
        text = cfg.source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    return _Context(cfg.source, text).where(dotted, message)


def _tier(ctx: _Context, entry: Any, path: str) -> TierConfig:
    if not isinstance(entry, Mapping):
        raise ConfigError(ctx.where(path, f"{path} must be a table with share, leverage, maintenance_margin"))
    fields = ctx.fields(entry, path, {
        "share": (float, _left_open(0.0, 1.0)),
        "leverage": (float, _at_least(1.0)),
        "maintenance_margin": (float, _at_least(0.0)),
    }, required=("share", "leverage", "maintenance_margin"))
    if fields["maintenance_margin"] >= 1.0 / fields["leverage"]:
        raise ConfigError(ctx.where(
            f"{path}.maintenance_margin",
            f"{path}.maintenance_margin {fields['maintenance_margin']} must be below the initial margin "
            f"1/leverage = {1.0 / fields['leverage']:.6g}",
        ))
    return TierConfig(**fields)


Check = Callable[[str, Any], str | None]


def _scheduler_address(key: str, value: str) -> str | None:
    if not re.fullmatch(r"[a-z]+://\S+", value):
        return f"{key} must be a Dask scheduler address such as 'tcp://host:8786', got {value!r}"
    return None


class _Context:
    """Locates keys in the TOML text so that errors can cite ``file:line``."""

    def __init__(self, source: Path | None, text: str | None) -> None:
        self.source = source
        self.lines = text.splitlines() if text is not None else []

    def where(self, dotted: str, message: str) -> str:
        line = self._line(dotted)
        if self.source is None:
            return message
        return f"{self.source}:{line}: {message}" if line else f"{self.source}: {message}"

    def no_unknown(self, table: Mapping[str, Any], known: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key not in known:
                dotted = f"{prefix}{key}"
                raise ConfigError(self.where(dotted, f"unknown key {dotted!r} (allowed: {', '.join(known)})"))

    def section(self, raw: Mapping[str, Any], name: str, schema: Mapping[str, tuple[Any, Check | None]]) -> dict[str, Any]:
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(self.where(name, f"{name} must be a table ([{name}])"))
        return self.fields(table, name, schema, required=())

    def fields(self, table: Mapping[str, Any], path: str, schema: Mapping[str, tuple[Any, Check | None]],
               required: tuple[str, ...]) -> dict[str, Any]:
        self.no_unknown(table, tuple(schema), f"{path}.")
        for key in required:
            if key not in table:
                raise ConfigError(self.where(path, f"missing required key '{path}.{key}'"))
        out: dict[str, Any] = {}
        for key, value in table.items():
            dotted = f"{path}.{key}"
            kind, check = schema[key]
            value = _coerce(value, kind)
            if value is _BAD:
                expected = " or ".join(_type_name(k) for k in (kind if isinstance(kind, tuple) else (kind,)))
                raise ConfigError(self.where(dotted, f"{dotted} must be {expected}, got {type(table[key]).__name__} {table[key]!r}"))
            # TOML has inf and nan literals; no key of ours means either (range checks alone
            # would let inf through every ">= 0")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(self.where(dotted, f"{dotted} must be a finite number, got {table[key]!r}"))
            if check is not None:
                problem = check(dotted, value)
                if problem:
                    raise ConfigError(self.where(dotted, problem))
            out[key] = value
        return out

    def _line(self, dotted: str) -> int | None:
        # Walk the text, tracking the current [table] / [[array]] header and, for arrays of
        # tables, which occurrence we are in (child counters restart under each parent).
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
        names: list[str] = []
        wanted: dict[str, int] = {}
        for part in parts:
            if part.startswith("["):
                wanted[".".join(names)] = int(part[1:-1])
            else:
                names.append(part)
        header_re = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
        seen: dict[str, int] = {}
        current = ""
        header_line = None

        def in_place() -> bool:
            return all(seen.get(table, -1) == index for table, index in wanted.items() if current.startswith(table))

        for number, line in enumerate(self.lines, start=1):
            m = header_re.match(line)
            if m:
                current = m.group(1)
                seen[current] = seen.get(current, -1) + 1
                for child in [k for k in seen if k.startswith(current + ".")]:
                    seen[child] = -1
                if current == ".".join(names) and in_place() and header_line is None:
                    header_line = number
                continue
            key, section = names[-1] if names else "", ".".join(names[:-1])
            if current == section and in_place() and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                return number
        return header_line


_BAD = object()


def _coerce(value: Any, kind: Any) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is bool and isinstance(value, bool):
            return value
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        # 1e6 is how people write a million scenarios; TOML reads it as a float
        if k is int and isinstance(value, float) and value.is_integer() and abs(value) < 2.0**53:
            return int(value)
        if k is dict and isinstance(value, Mapping):
            return dict(value)
        if k in (str, list) and isinstance(value, k):
            return value
    return _BAD


def _type_name(kind: Any) -> str:
    return {bool: "true or false", float: "a number", int: "an integer", str: "a string", list: "an array", dict: "a table"}[kind]


def _at_least(low: float) -> Check:
    return lambda key, v: None if v >= low else f"{key} must be >= {low:g}, got {v!r}"


def _greater(low: float) -> Check:
    return lambda key, v: None if (math.isfinite(v) and v > low) else f"{key} must be > {low:g}, got {v!r}"


def _open_interval(low: float, high: float) -> Check:
    return lambda key, v: None if low < v < high else f"{key} must be strictly between {low:g} and {high:g}, got {v!r}"


def _left_open(low: float, high: float) -> Check:
    return lambda key, v: None if low < v <= high else f"{key} must be in ({low:g}, {high:g}], got {v!r}"


def _ruin_rule(key: str, v: dict) -> str | None:
    try:
        RuinRule.from_dict(dict(v))
    except FundguardError as exc:
        return f"{key}: {exc}"
    return None


def _closed_unit(key: str, v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else f"{key} must be in [0, 1], got {v!r}"


def _elasticity(key: str, v: float) -> str | None:
    # the literature's range for volume against trading costs is about 0.25..2.7 (optimizer.participation)
    return None if (math.isfinite(v) and 0.0 <= v <= 10.0) else \
        f"{key} must be in [0, 10] (about 1 in the literature; 0 turns participation off), got {v!r}"


def _finite(key: str, v: float) -> str | None:
    return None if math.isfinite(v) else f"{key} must be finite, got {v!r}"


def _nonempty(key: str, v: str) -> str | None:
    return None if v.strip() else f"{key} must not be empty"


def _currency(key: str, v: str) -> str | None:
    # a label on reports and plots: a short code or symbol, printable, on one line
    if not v.strip() or len(v) > 12 or not v.isprintable():
        return f"{key} must be a short printable label such as 'USD' or 'USDT', got {v!r}"
    return None


def _market_name(key: str, v: str) -> str | None:
    # names go into one-line messages, terminal output and report tables: no line breaks,
    # tabs or terminal escapes (TOML strings can hold them as \n, \t, \u001b)
    bad = next((ch for ch in v if not ch.isprintable()), None)
    if bad is not None:
        return f"{key} must not contain control characters (such as newlines), got {v!r}"
    return _nonempty(key, v)


def _one_of(options: tuple[str, ...]) -> Check:
    return lambda key, v: None if v in options else f"{key} must be one of {', '.join(options)}; got {v!r}"


def parse_vol_spec(text: str, name: str = "spec") -> VolSpec | str:
    """``"auto"``, or :meth:`VolSpec.parse <fundguard.models.VolSpec.parse>` of VOL-DIST text such as ``"GJR-t"``.

    The job's reading of config ``volatility.spec`` and ``fundguard fit --spec``; the notation
    itself is parsed in one place, ``VolSpec.parse``. Raises
    :class:`~fundguard.models.errors.SpecificationError` whose message starts with ``name``.
    """
    if text == "auto":
        return text
    try:
        return VolSpec.parse(text)
    except SpecificationError as exc:
        raise SpecificationError(f"{name}: {exc}") from None


def _check_spec(key: str, v: str) -> str | None:
    try:
        parse_vol_spec(v, key)
    except SpecificationError:
        return f"{key} must be 'auto' or VOL-DIST with VOL in GARCH, GJR, EGARCH and DIST in normal, t, skewt, ged (e.g. 'GJR-t'); got {v!r}"
    return None


def _dates(key: str, v: list) -> str | None:
    for i, item in enumerate(v):
        if not isinstance(item, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2})?Z?)?", item):
            return f"{key}[{i}] must be a date 'YYYY-MM-DD', got {item!r}"
        try:  # the pattern lets 2021-02-30 and 25:00 through; the calendar does not
            dt.datetime.fromisoformat(item)
        except ValueError as exc:
            return f"{key}[{i}] is not a calendar date: {item!r} ({exc})"
    return None


def _shocks(key: str, v: list) -> str | None:
    for i, item in enumerate(v):
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not -1.0 < item < 10.0 or item == 0:
            return f"{key}[{i}] must be a non-zero simple return in (-1, 10) (e.g. -0.3 for -30%), got {item!r}"
    return None


def _per_market_nonneg(key: str, v: float | dict) -> str | None:
    values = v.items() if isinstance(v, dict) else [(None, v)]
    for market, x in values:
        name = f"{key}.{market}" if market is not None else key
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            return f"{name} must be a finite number >= 0, got {x!r}"
    return None


def _rate(key: str, v: float) -> str | None:
    # A premium rate is a fraction of its premium base: above 1 the venue would charge more
    # than the whole base (a rate given in percent, 1.25 for 1.25%, is the usual slip).
    if not 0.0 <= v <= 1.0:
        return f"{key} must be a premium rate in [0, 1] (a fraction: 0.0125 for 1.25%), got {v!r}"
    return None


def _per_market_rate(key: str, v: float | dict) -> str | None:
    problem = _per_market_nonneg(key, v)
    if problem:
        return problem
    values = v.items() if isinstance(v, dict) else [(None, v)]
    for market, x in values:
        problem = _rate(f"{key}.{market}" if market is not None else key, float(x))
        if problem:
            return problem
    return None

