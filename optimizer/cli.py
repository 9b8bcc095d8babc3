"""The ``fundguard`` command line.

Subcommands so far:

* ``fundguard fit PRICES...`` — load prices, fit a volatility model per market, print a
  summary table or (``--json``) machine-readable results.

Exit codes: 0 success, 2 bad usage or bad input (the message names the file, market or
field), 1 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from fundguard.models import FundguardError, VolSpec, fit_volatility, load_prices, log_returns

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fundguard`` console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_OK
    try:
        return args.handler(args)
    except FundguardError as exc:
        print(f"fundguard: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fundguard",
        description=(
            "Size the insurance fund of a crypto derivatives venue: GARCH tail scenarios, "
            "a chance-constrained optimiser for the fund target and premium rates, and "
            "certificates of how sure the answer is."
        ),
    )
    parser.add_argument("--version", action="version", version=f"fundguard {_version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    fit = sub.add_parser(
        "fit",
        help="fit a GARCH-family volatility model to each market's prices",
        description=(
            "Load prices (CSV or Parquet; a date/timestamp column plus one price column per market, "
            "an OHLC file whose 'close' is used, or a long file with a market column), compute log "
            "returns and fit a volatility model per market."
        ),
    )
    fit.add_argument("prices", nargs="+", help="price files; NAME=PATH names the market (default: the file's stem)")
    fit.add_argument("--spec", default="auto", help="'auto' (lowest BIC of 12 candidates) or VOL-DIST such as GJR-t, EGARCH-skewt")
    fit.add_argument("--column", default=None, help="price column to use (default 'close' or 'price', else every column)")
    fit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fit.set_defaults(handler=_cmd_fit)
    return parser


def _cmd_fit(args: argparse.Namespace) -> int:
    spec = _parse_spec(args.spec)
    rows = []
    for item in args.prices:
        name, _, path = item.rpartition("=") if "=" in item else (None, "", item)
        prices = load_prices(path, price_column=args.column, name=name or None)
        returns = log_returns(prices)
        for market in returns.columns:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = fit_volatility(returns[market], spec)
            d = model.diagnostics
            rows.append(
                {
                    "market": market,
                    "source": prices.attrs["source"],
                    "frequency": prices.attrs["frequency"],
                    "first": str(returns.index[0]),
                    "last": str(returns.index[-1]),
                    "n_returns": model.nobs,
                    "spec": str(model.spec),
                    "params": model.params,
                    "persistence": d.persistence,
                    "half_life_periods": d.half_life,
                    "annualized_volatility": d.annualized_volatility,
                    "current_volatility": math.sqrt(model.next_variance),
                    "ljung_box_pvalue": d.ljung_box_pvalue,
                    "converged": d.converged,
                    "bic": model.bic,
                    "warnings": [str(w.message) for w in caught],
                }
            )
    if args.json:
        # Strict JSON: non-finite numbers (an infinite half-life) become null.
        json.dump(_strict_json(rows), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return EXIT_OK
    w = max(6, *(len(r["market"]) for r in rows))
    header = f"{'market':<{w}} {'freq':<7} {'n':>6} {'model':<14} {'persist':>8} {'half-life':>9} {'ann.vol':>8} {'now vol':>8} {'LB p':>6}"
    print(header)
    for r in rows:
        print(
            f"{r['market']:<{w}} {r['frequency']:<7} {r['n_returns']:>6} {r['spec']:<14} {r['persistence']:>8.4f} "
            f"{r['half_life_periods']:>9.1f} {r['annualized_volatility']:>8.1%} {r['current_volatility']:>8.2%} "
            f"{r['ljung_box_pvalue']:>6.3f}"
        )
        for message in r["warnings"]:
            print(f"  warning: {message}")
    return EXIT_OK


def _parse_spec(text: str) -> VolSpec | str:
    if text == "auto":
        return text
    vol, sep, dist = text.partition("-")
    if not sep:
        raise FundguardErrorUsage(f"--spec must be 'auto' or VOL-DIST (e.g. GJR-t), got {text!r}")
    return VolSpec(vol, dist)


class FundguardErrorUsage(FundguardError, ValueError):
    """A command-line argument that cannot be used."""


def _strict_json(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def _version() -> str:
    try:
        return version("fundguard")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
