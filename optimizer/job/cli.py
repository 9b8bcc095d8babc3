"""The ``fundguard`` command line.

Commands: ``calibrate`` (the whole job; no arguments runs the built-in preset), ``frontier``, ``loss-check``
(public liquidation events replayed through the loss model; 3 when a ratio leaves the band), ``loss-fit``
(the stateful book fitted to a venue's data: loss_model.json),
``check`` (daily monitoring), ``fit`` (volatility models only) and ``preset build``.

Exit codes (also in the README):

====  ==========================================================================
0     success; for ``check``: the balance meets alpha at the rates in force (certified) and
      survives the stress scenarios
1     unexpected internal error (a bug: please report it with the traceback)
2     bad usage, config or input data; the message names the key, file, market or date
3     ``check``: the balance does not meet alpha at the rates in force; ``calibrate``: the certificate's bound
      exceeds alpha (outputs are still written)
4     no policy meets the constraints (infeasible, or nothing could be certified)
5     the output folder is locked by another run
6     ``calibrate``, ``frontier``: some simulated paths exceed the stated bound on one-period
      moves (|log return| 2 a period of a day or less, times sqrt(period / 1 day) beyond;
      ``fundguard.models.scenarios.bounds``):
      the volatility model explodes on them, the notes count them (outputs are still written;
      takes precedence over 3)
130   interrupted (Ctrl-C)
====  ==========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from fundguard.models.errors import CertificationError, ConfigError, FundguardError, InfeasibleError

from .outputs import OutputBusyError, check_output_file, check_output_folder, json_safe, package_versions, staged_output

__all__ = ["main", "UsageError", "FRONTIER_ALPHAS", "EXIT_OK", "EXIT_INTERNAL", "EXIT_INPUT", "EXIT_BELOW_TARGET",
           "EXIT_INFEASIBLE", "EXIT_BUSY", "EXIT_IMPLAUSIBLE_PATHS", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_INPUT = 2
EXIT_BELOW_TARGET = 3
EXIT_INFEASIBLE = 4
EXIT_BUSY = 5
# Its own code, not 3: the certificate may be met, but on paths no market has taken (the fund
# target is the model's arithmetic), and a script must be able to tell that from a thin fund.
EXIT_IMPLAUSIBLE_PATHS = 6
EXIT_INTERRUPTED = 130  # the shell's code for a run ended by Ctrl-C (128 + SIGINT)

#: The names of ``fundguard.optimizer.METHODS``, spelled out so that ``fundguard --help`` does not
#: import the solvers (tests/test_cli.py checks the two agree).
METHOD_NAMES = ("cvar", "exact", "scenario", "certified")

FRONTIER_ALPHAS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05)
logger = logging.getLogger("fundguard")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fundguard`` console script; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_OK
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z",
                        stream=sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # restored when the block ends
            if getattr(args, "quiet", False):
                warnings.simplefilter("ignore")
            _check_arguments(args)
            return args.handler(args)
    except OutputBusyError as exc:
        print(f"fundguard: error: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except (InfeasibleError, CertificationError) as exc:
        print(f"fundguard: no feasible policy: {exc}", file=sys.stderr)
        return EXIT_INFEASIBLE
    except FundguardError as exc:
        print(f"fundguard: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("fundguard: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("fundguard: error: out of memory; lower n_scenarios / certify_scenarios / horizon "
              "or use chunked mode ([compute] workers)", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:  # a file or folder the user named: unreadable, read-only, full disk, ...
        print(f"fundguard: error: {_os_error_line(exc)}", file=sys.stderr)
        return EXIT_INPUT


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """A warning on the command line is one line naming its kind, not Python's two-line form with
    the source line of the library."""
    text = " ".join(str(message).split())
    print(f"fundguard: warning: {text} ({category.__name__})", file=file or sys.stderr)


def _check_arguments(args: argparse.Namespace) -> None:
    """Numeric options argparse cannot range-check, refused before any work with one line naming the option."""
    from .compute import check_workers

    seed = getattr(args, "seed", None)
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed}")
    workers = getattr(args, "workers", None)
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be an integer >= 1, got {workers}")
        if getattr(args, "scheduler", None) is None:
            check_workers(workers, force=args.force_workers, option="--workers")


def _os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: what failed, on which path."""
    reason = exc.strerror or exc.__class__.__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(repr(str(p)) for p in paths)
    return f"{reason}: {where}" if where else f"{reason} ({exc})".replace("\n", " ")


_EPILOG_CALIBRATE = """examples:
  fundguard calibrate                          # built-in preset (BTC, ETH, SOL; illustrative book)
  fundguard calibrate --config fund.toml --out results/2026-11-25
  fundguard calibrate --config fund.toml --json --quiet > result.json
  fundguard calibrate --method exact --workers 2          # local Dask cluster (pip install "fundguard[dask]")
  fundguard calibrate --config fund.toml --scheduler tcp://scheduler:8786
"""


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line errors: ``fundguard: error: ...`` and where to read more,
    instead of the usage block (exit code 2, as argparse's own)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"fundguard: error: {self.prog}: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fundguard",
        description=(
            "Size the insurance fund of a crypto derivatives venue: GARCH tail scenarios, "
            "a chance-constrained optimiser for the fund target and premium rates, and "
            "certificates of how sure the answer is."
        ),
        epilog="exit codes: 0 ok, 1 internal error, 2 bad input/config, 3 below target, 4 infeasible, 5 output locked, "
               "6 simulated paths beyond the stated bound (|log return| 2 a day; the volatility model explodes; "
               "outputs written, notes count them), 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"fundguard {package_versions(('fundguard',))['fundguard']}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="calibration TOML file (default: the built-in preset)")
    common.add_argument("--preset", type=Path, help="preset JSON for markets without prices (default: built-in)")
    common.add_argument("--seed", type=int, help="overrides scenarios.seed")
    common.add_argument("--method", choices=METHOD_NAMES, help="overrides problem.method")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress and no warnings on stderr")
    common.add_argument("--verbose", "-v", action="store_true", help="log each step")
    common.add_argument("--progress", action="store_true",
                        help="progress lines and bars on stderr even when it is not a terminal (a pipe, a log file)")

    cluster = argparse.ArgumentParser(add_help=False)
    cluster.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on this Dask scheduler, e.g. tcp://host:8786 (overrides [compute]; needs fundguard[dask])")
    cluster.add_argument("--workers", type=int, metavar="N",
                         help="run on a local Dask cluster of N worker processes (overrides [compute]; needs fundguard[dask]); "
                              "at most 4 per CPU unless --force-workers")
    cluster.add_argument("--force-workers", action="store_true",
                         help="start the local cluster even with more than 4 workers per CPU")

    cal = sub.add_parser("calibrate", parents=[common, cluster], help="fit, simulate, solve, certify and write the outputs",
                         description="Run a complete calibration and write result.json, report.md and plots.",
                         epilog=_EPILOG_CALIBRATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cal.add_argument("--out", type=Path, default=Path("fundguard-out"), help="output folder (default: fundguard-out)")
    cal.add_argument("--json", action="store_true", help="print result.json to stdout instead of the summary")
    cal.add_argument("--no-frontier", action="store_true", help="skip the cost-of-solvency frontier")
    cal.add_argument("--history", type=Path, metavar="FILE",
                     help="also append this run to an SQLite history file (created when missing; append-only)")
    cal.set_defaults(handler=_cmd_calibrate)

    his = sub.add_parser("history", help="print or export the recalibration history (calibrate --history FILE)",
                         description="The runs appended by 'fundguard calibrate --history FILE', oldest first: when, "
                                     "config digest, fund target, rates, certificate, data range.",
                         epilog="examples:\n  fundguard history runs.sqlite --last 10\n"
                                "  fundguard history runs.sqlite --format csv > runs.csv",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    his.add_argument("file", type=Path, help="the history file")
    his.add_argument("--last", type=int, metavar="N", help="only the N most recent runs")
    his.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default table)")
    his.set_defaults(handler=_cmd_history)

    sch = sub.add_parser("schema", help="print the JSON Schema of result.json",
                         description="The JSON Schema (draft 2020-12) that every result.json validates against; the "
                                     "same document ships in the package as fundguard/optimizer/job/result.schema.json.")
    sch.set_defaults(handler=_cmd_schema)

    fro = sub.add_parser("frontier", parents=[common, cluster], help="the cost of solvency against alpha: table and plot",
                         epilog="examples:\n  fundguard frontier --alphas 0.001,0.01,0.05 --out frontier\n"
                                "  fundguard frontier --method exact --workers 2      # local Dask cluster",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    fro.add_argument("--alphas", default=",".join(map(str, FRONTIER_ALPHAS)), help="comma-separated ruin levels")
    fro.add_argument("--out", type=Path, help="also write frontier.md and frontier.png here")
    fro.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fro.set_defaults(handler=_cmd_frontier)

    chk = sub.add_parser("check", parents=[common], help="daily monitoring: is the current balance enough?",
                         description="Today's model state, the probability of ruin over the horizon of the current "
                                     "balance at the current rates (markets.current_rate), and the gap to target.",
                         epilog="exit codes: 0 the balance meets alpha at the rates in force (certified) and survives the stress "
                                "scenarios, 3 it does not, "
                                "2 bad input\n"
                                "example:\n  fundguard check --fund 45e6 --config fund.toml",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("--fund", type=float, required=True, help="current fund balance, currency units")
    chk.add_argument("--result", type=Path, help="take the target from this result.json instead of recalibrating")
    chk.add_argument("--json", action="store_true", help="print JSON")
    chk.set_defaults(handler=_cmd_check)

    pre = sub.add_parser("preset", help="build the built-in preset from price files")
    pre_sub = pre.add_subparsers(title="preset commands", metavar="ACTION")
    build = pre_sub.add_parser("build", help="fit models, copula and tails; write a preset JSON",
                               epilog="example:\n  fundguard preset build --prices BTC=btc.csv ETH=eth.csv SOL=sol.csv "
                                      "--out optimizer/job/presets/default.json",
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--prices", nargs="+", required=True, metavar="NAME=FILE", help="one price file per market")
    build.add_argument("--out", type=Path, default=Path("fundguard-preset.json"), help="where to write the preset")
    build.add_argument("--column", help="price column (default close/price)")
    build.set_defaults(handler=_cmd_preset_build)

    fit = sub.add_parser(
        "fit",
        help="fit a GARCH-family volatility model to each market's prices",
        description=(
            "Load prices (CSV or Parquet; a date/timestamp column plus one price column per market, "
            "an OHLC file whose 'close' is used, or a long file with a market column), compute log "
            "returns and fit a volatility model per market."
        ),
        epilog="example:\n  fundguard fit BTC=btc.csv ETH=eth.csv --spec GJR-t --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("prices", nargs="+", help="price files; NAME=PATH names the market (default: the file's stem)")
    fit.add_argument("--spec", default="auto", help="'auto' (lowest BIC of 12 candidates) or VOL-DIST such as GJR-t, EGARCH-skewt")
    fit.add_argument("--column", default=None, help="price column to use (default 'close' or 'price', else every column)")
    fit.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fit.set_defaults(handler=_cmd_fit)
    _add_losskit_commands(sub)
    return parser


# -- losskit: loss-check and loss-fit ---------------------------------------------------------------
def _add_losskit_commands(sub) -> None:
    chk = sub.add_parser(
        "loss-check", help="replay public liquidation events through the loss model; exit 3 outside the band",
        description="Replay each event row (the columns of public_liquidation_events.csv) whose market has prices: "
                    "warmup days from the steady state, then the event's UTC day, scaled to the row's open interest; "
                    "model against reported liquidated notional and fund loss.",
        epilog="exit codes: 0 every ratio inside the band, 3 a ratio outside it, 2 bad input\n"
               "example:\n  fundguard loss-check --events public_liquidation_events.csv "
               "--prices BTC=bitstamp_BTCUSD_hourly.csv --band 0.333,3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("--events", type=Path, required=True, help="events CSV (columns of public_liquidation_events.csv)")
    chk.add_argument("--prices", nargs="+", required=True, metavar="MARKET=FILE",
                     help="OHLC bars (daily or hourly) per market prefix: BTC matches BTCUSDT, XBTUSD, BTC")
    chk.add_argument("--loss-model", help="a loss model name or a loss_model.json (default: the stateful book)")
    chk.add_argument("--band", metavar="LO,HI",
                     help="accepted model / reported ratios (default 1/3,3)")
    chk.add_argument("--turnover", type=float, help="ADV / open interest of the replayed book (default 3)")
    chk.add_argument("--warmup", type=int, help="days replayed before the event (default 30)")
    chk.add_argument("--exclude-uncertain", action="store_true",
                     help="rows with an 'uncertain' note do not set the exit code")
    chk.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    chk.set_defaults(handler=_cmd_loss_check)

    fit = sub.add_parser(
        "loss-fit", help="fit the stateful book to a venue's own data; write loss_model.json",
        description="Fit the stateful book's parameters from a venue's per-period data (time, market, open_interest, "
                    "liquidated_long, liquidated_short, optional fund_loss, fee_income) and optional position "
                    "snapshots (market, side, leverage or distance, notional), with block-bootstrap intervals.",
        epilog="example:\n  fundguard loss-fit --venue-data venue.csv --prices BTC=btc_daily.csv --out loss_model.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("--venue-data", type=Path, required=True, help="per-period venue CSV")
    fit.add_argument("--prices", nargs="+", required=True, metavar="MARKET=FILE", help="OHLC bars per venue market")
    fit.add_argument("--snapshots", type=Path, help="position snapshots CSV")
    fit.add_argument("--out", type=Path, default=Path("loss_model.json"), help="where to write (default loss_model.json)")
    fit.add_argument("--force", action="store_true", help="replace an existing file at --out")
    fit.add_argument("--turnover", type=float, help="ADV / open interest (default 3)")
    fit.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates (default 200)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fit.add_argument("--json", action="store_true", help="print loss_model.json to stdout as well")
    fit.set_defaults(handler=_cmd_loss_fit)


def _cmd_loss_check(args: argparse.Namespace) -> int:
    from .losscheck import DEFAULT_BAND, DEFAULT_TURNOVER, DEFAULT_WARMUP_DAYS, check_events, parse_band, \
        parse_prices_option, read_ohlc

    band = DEFAULT_BAND if args.band is None else parse_band(args.band, "--band")
    args.turnover = DEFAULT_TURNOVER if args.turnover is None else args.turnover
    args.warmup = DEFAULT_WARMUP_DAYS if args.warmup is None else args.warmup
    if not (math.isfinite(args.turnover) and args.turnover > 0):
        raise UsageError(f"--turnover must be a number > 0 (ADV / open interest), got {args.turnover!r}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be an integer >= 0 (days), got {args.warmup}")
    prices = {name: read_ohlc(path, name) for name, path in parse_prices_option(args.prices, "--prices")}
    table = check_events(args.events, prices, loss_model=args.loss_model, turnover=args.turnover,
                         warmup_days=args.warmup, band=band, exclude_uncertain=args.exclude_uncertain)
    code = EXIT_BELOW_TARGET if table.attrs["outside_band"] else EXIT_OK
    if args.json:
        document = {"schema": 1, "band": list(band), "turnover": args.turnover, "warmup_days": args.warmup,
                    "exclude_uncertain": args.exclude_uncertain, "loss_model": table.attrs["loss_model"],
                    "checked": int((table["status"] == "checked").sum()), "outside_band": table.attrs["outside_band"],
                    "exit_code": code, "rows": table.to_dict(orient="records")}
        json.dump(json_safe(document), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return code
    print(f"{'date':<10} {'market':<8} {'prices':<6} {'OI/side':>9} {'liq model':>10} {'reported':>10} {'ratio':>6} "
          f"{'fund gross':>10} {'net':>10} {'reported':>10} {'ratio':>6}  verdict")
    for r in table.to_dict(orient="records"):
        if r["status"] != "checked":
            shown = r["prices"] if isinstance(r["prices"], str) else "-"
            print(f"{r['date']:<10} {r['market']:<8} {shown:<6} skipped: {r['reason']}")
            continue
        verdict = {True: "ok", False: "OUTSIDE"}.get(r["in_band"], "no ratio")
        if r["uncertain"]:
            verdict += " (uncertain" + ("" if r["counts"] or r["in_band"] != r["in_band"] else ", not counted") + ")"
        print(f"{r['date']:<10} {r['market']:<8} {r['prices']:<6} {_money(r['open_interest']):>9} "
              f"{_money(r['model_liquidated']):>10} {_money(r['reported_liquidated']):>10} "
              f"{_ratio(r['liquidated_ratio']):>6} "
              f"{_money(r['model_fund_loss']):>10} {_money(r['model_net_fund_loss']):>10} "
              f"{_money(r['reported_fund_loss']):>10} {_ratio(r['fund_loss_ratio']):>6}  {verdict}")
    print(f"band {band[0]:.3g}..{band[1]:.3g} on liquidated and gross fund-loss ratios; {table.attrs['outside_band']} "
          f"counted row(s) outside; turnover {args.turnover:g}, warmup {args.warmup} days")
    return code


def _money(value: float) -> str:
    if value != value:
        return "-"
    for unit, size in (("bn", 1e9), ("m", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _ratio(value: float) -> str:
    return "-" if value != value else f"{value:.2f}"


def _cmd_loss_fit(args: argparse.Namespace) -> int:
    from .losscheck import DEFAULT_TURNOVER, parse_prices_option, read_ohlc
    from .lossfit import check_loss_model_output, fit_loss_model, read_snapshots, read_venue_data, write_loss_model

    args.turnover = DEFAULT_TURNOVER if args.turnover is None else args.turnover

    if not (math.isfinite(args.turnover) and args.turnover > 0):
        raise UsageError(f"--turnover must be a number > 0 (ADV / open interest), got {args.turnover!r}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be an integer >= 0, got {args.bootstrap}")
    if args.seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {args.seed}")
    check_loss_model_output(args.out, force=args.force)  # before the fit: a refused --out should not cost one
    items = parse_prices_option(args.prices, "--prices")
    prices = {name: read_ohlc(path, name) for name, path in items}
    venue = read_venue_data(args.venue_data)
    snapshots = read_snapshots(args.snapshots) if args.snapshots is not None else None
    fit = fit_loss_model(venue, prices, snapshots=snapshots, turnover=args.turnover, bootstrap=args.bootstrap,
                         seed=args.seed)
    inputs = {"venue_data": args.venue_data, **{f"prices {n}": p for n, p in items}}
    if args.snapshots is not None:
        inputs["snapshots"] = args.snapshots
    command = " ".join(["fundguard loss-fit --venue-data", Path(args.venue_data).name, "--prices",
                        *(f"{n}={Path(p).name}" for n, p in items),
                        *(["--snapshots", Path(args.snapshots).name] if args.snapshots is not None else []),
                        "--out", Path(args.out).name, f"--turnover {args.turnover:g} --bootstrap {args.bootstrap} "
                        f"--seed {args.seed}"])
    path, document = write_loss_model(fit, args.out, inputs=inputs, command=command, force=args.force)
    if args.json:
        json.dump(document, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        for name, entry in document["fit"]["parameters"].items():
            low, high = entry["interval"] if entry["interval"] is not None else (math.nan, math.nan)
            value = f"{entry['value']:>10.4g}" if not isinstance(entry["value"], bool) else f"{entry['value']!s:>10}"
            shown = f"[{low:.4g}, {high:.4g}]" if entry["interval"] is not None else "(fixed)"
            print(f"{name:<16} {value}  {shown:<20}  {entry['method']}")
        print(f"loss model written to {path}")
    return EXIT_OK


class _Progress:
    """Step lines with elapsed time on stderr, and a bar with counts (tqdm) for the steps that
    report them (simulation chunks, fresh draws, sensitivities): on a terminal, or anywhere with
    --progress, never with --quiet. With --verbose the steps go to the log instead (timestamped,
    one line each, also on a pipe) and no bar is drawn."""

    def __init__(self, enabled: bool, verbose: bool = False) -> None:
        self.enabled = enabled and not verbose
        self.verbose = verbose
        self.start = time.perf_counter()
        self.step = 0
        self._bar = None
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        self._close()
        if self.verbose:
            logger.info(message)
        if self.enabled:
            if not message.startswith("  "):
                self.step += 1
            print(f"[{time.perf_counter() - self.start:6.1f}s] {message}", file=sys.stderr, flush=True)

    def advance(self, done: int, total: int, unit: str = "it") -> None:
        """``done`` of ``total`` in the current step (may be called from worker threads)."""
        if not self.enabled or total <= 0:
            return
        with self._lock:
            if self._bar is None or self._bar.total != total:
                self._close_locked()
                from tqdm import tqdm  # only when a bar is drawn: --help and pipes never load it

                self._bar = tqdm(total=total, unit=f" {unit}", unit_scale=total >= 10_000, file=sys.stderr, leave=True,
                                 dynamic_ncols=True, mininterval=0.5, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{unit} "
                                 "[{elapsed}<{remaining}]")
            self._bar.update(max(0, min(done, total) - self._bar.n))
            if done >= total:
                self._close_locked()

    def _close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def finish(self) -> None:
        """The total time, as the last line."""
        self(f"done in {time.perf_counter() - self.start:.1f} s")


def _progress(args: argparse.Namespace) -> _Progress:
    forced = bool(getattr(args, "progress", False))
    return _Progress(enabled=(sys.stderr.isatty() or forced) and not args.quiet,
                     verbose=bool(getattr(args, "verbose", False)))


def _load_preset(args: argparse.Namespace):
    from .preset import load_preset

    return load_preset(args.preset) if args.preset else None


def _calibrate_on_cluster(args: argparse.Namespace, options: dict):
    """``calibrate`` on the Dask cluster named by --scheduler / --workers (made and closed by
    :func:`calibrate` itself, after its size checks)."""
    from .build import check_mode, resolve_config
    from .calibrate import calibrate

    if args.scheduler is not None and "://" not in args.scheduler:
        raise ConfigError(f"--scheduler must be a Dask scheduler address such as tcp://host:8786, got {args.scheduler!r}")
    cfg = resolve_config(args.config)
    compute = cfg.compute
    if args.scheduler is not None or args.workers is not None:
        compute = dataclasses.replace(compute, scheduler=args.scheduler,
                                      workers=None if args.scheduler is not None else args.workers)
    compute = dataclasses.replace(compute, force_workers=compute.force_workers or args.force_workers)
    cfg = dataclasses.replace(cfg, compute=compute)
    method = options.get("method") or cfg.problem.method
    check_mode(method, compute.distributed, how="with --workers / --scheduler; use --method cvar or exact")
    return calibrate(cfg, **options)


def _run_calibrate(args: argparse.Namespace, options: dict):
    """``calibrate`` in this process, or on a Dask cluster when --scheduler / --workers is given."""
    from .calibrate import calibrate

    if args.scheduler is not None or args.workers is not None or args.force_workers:
        return _calibrate_on_cluster(args, options)
    return calibrate(args.config, **options)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .history import check_history, record_run
    from .report import summary_lines, write_outputs

    check_output_folder(args.out)  # before the calibration: a refused --out should not cost a run
    if args.history is not None:
        check_history(args.history)  # likewise for a history file that cannot take the run
    options = dict(seed=args.seed, method=args.method, preset=_load_preset(args),
                   frontier_alphas=() if args.no_frontier else FRONTIER_ALPHAS, progress=_progress(args))
    result = _run_calibrate(args, options)
    out = write_outputs(result, args.out)
    row = None if args.history is None else record_run(args.history, result, out=out)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        print("\n".join(summary_lines(result)))
        for note in result.notes:
            print(f"note            {note}")
        print(f"outputs         {out}/ (result.json, report.md, report.html, plots)")
        if row is not None:
            print(f"history         run {row} appended to {args.history}")
    options["progress"].finish()
    return _exit_code(result)


def _cmd_history(args: argparse.Namespace) -> int:
    from .history import read_history

    if args.last is not None and args.last < 1:
        raise UsageError(f"--last must be an integer >= 1, got {args.last}")
    frame = read_history(args.file, last=args.last)
    if args.format == "json":
        json.dump(json_safe(frame.reset_index().to_dict(orient="records")), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    elif args.format == "csv":
        out = frame.copy()
        for column in ("rates", "data_range", "versions"):
            out[column] = [json.dumps(v, sort_keys=True) for v in out[column]]
        out.to_csv(sys.stdout)
    else:
        if frame.empty:
            print(f"no runs in {args.file}")
            return EXIT_OK
        print(f"{'id':>4} {'started':<25} {'config':<12} {'method':<9} {'alpha':>6} {'fund target':>16} "
              f"{'P(ruin) <=':>10} {'meets':<5} data")
        for run_id, r in frame.iterrows():
            data = f"{r['data_first'] or '-'}..{r['data_last'] or '-'}"
            print(f"{run_id:>4} {r['started']:<25} {r['config_digest'][:12]:<12} {r['method']:<9} {r['alpha']:>6.2%} "
                  f"{r['fund_target']:>16,.0f} {r['certificate_upper_bound']:>10.3%} {'yes' if r['meets_target'] else 'NO':<5} "
                  f"{data}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:  # noqa: ARG001
    from importlib.resources import files

    sys.stdout.write(files("fundguard.optimizer.job").joinpath("result.schema.json").read_text(encoding="utf-8"))
    return EXIT_OK


def _exit_code(result) -> int:
    """A calibration's exit code: 6 with paths beyond the stated bound, else 0 or 3 by the certificate."""
    if result.implausible_paths:
        return EXIT_IMPLAUSIBLE_PATHS
    return EXIT_OK if result.meets_target else EXIT_BELOW_TARGET


def _cmd_frontier(args: argparse.Namespace) -> int:
    try:
        alphas = tuple(float(a) for a in args.alphas.split(","))
    except ValueError:
        raise UsageError(f"--alphas must be comma-separated numbers, got {args.alphas!r}") from None
    if args.out is not None:
        check_output_folder(args.out)  # before the calibration: a refused --out should not cost a run
    method = args.method  # None: the config's method, the frontier traced with it
    result = _run_calibrate(args, dict(seed=args.seed, method=method, preset=_load_preset(args),
                                       frontier_alphas=alphas, frontier_method=method, progress=_progress(args)))
    rows = [{"alpha": p.alpha, "fund_target": p.fund_target, "objective": p.objective,
             "premium_rates": p.rates_by_market(), "in_sample_ruin": p.in_sample_ruin} for p in result.frontier]
    if not rows:
        raise UsageError("; ".join(result.notes) or "frontier could not be traced")
    table = ["| alpha | fund target | total cost (objective) | in-sample ruin | rates |", "|---:|---:|---:|---:|---|"]
    table += [f"| {r['alpha']:.2%} | {r['fund_target']:,.0f} | {r['objective']:,.0f} | {r['in_sample_ruin']:.3%} | "
              + ", ".join(f"{m} {x:.4%}" for m, x in r["premium_rates"].items()) + " |" for r in rows]
    if args.out is not None:
        from .report import write_plots

        with staged_output(args.out) as stage:
            (stage / "frontier.md").write_text(f"# Cost of solvency ({method})\n\n" + "\n".join(table) + "\n")
            (stage / "frontier.json").write_text(json.dumps(rows, indent=2) + "\n")
            write_plots(result, stage)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print("\n".join(table))
    if result.implausible_paths:
        for note in result.notes:
            print(f"fundguard: note: {note}", file=sys.stderr)
        return EXIT_IMPLAUSIBLE_PATHS
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from .balance import check_balance

    if not math.isfinite(args.fund) or args.fund < 0:
        raise UsageError(f"--fund must be a finite balance >= 0, got {args.fund!r}")
    report = check_balance(args.fund, args.config, seed=args.seed, method=args.method, preset=_load_preset(args),
                           result_file=args.result, progress=_progress(args))
    if args.json:
        json.dump(report, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        a = report["alpha"]
        verdict = "is enough" if report["meets"] else "is NOT enough"
        print(f"balance         {report['balance']:,.0f} {verdict} at the rates in force: "
              f"P(ruin over {report['horizon']} periods) {report['ruin_rate']:.3%} "
              f"(<= {report['upper_bound']:.3%} at {report['confidence']:.0%}, {report['n']:,} fresh scenarios; "
              f"alpha {a:.2%})")
        if report["stress_required"] is not None:
            state = "survives" if report["survives_stress"] else "does NOT survive"
            print(f"stress          the balance {state} the stress scenarios at the rates in force "
                  f"(the worst needs {report['stress_required']:,.0f})")
        smallest = report["smallest_balance"]
        print("smallest        " + (f"{smallest:,.0f} meets alpha at the rates in force" if smallest is not None
                                    else f"{report['n']:,} scenarios are too few to certify alpha {a:.2%}")
              + ("" if smallest is None or report["stress_required"] is None else " and survives the stress scenarios"))
        print(f"target          {report['target']:,.0f} (the calibration's, at its optimised rates; "
              f"gap {report['gap']:+,.0f})")
        if not report["meets"]:
            rates = report["rates_for_balance"]
            if rates is None:
                print(f"rates           none found: {report['rates_for_balance_note']}")
            else:
                listed = ", ".join(f"{name} {rate:.4%}" for name, rate in rates.items())
                state = "certified" if report["rates_for_balance_meet"] else "NOT certified on the fresh scenarios"
                print(f"rates           {listed} would make this balance enough ({state})")
        for name, state in report["markets"].items():
            print(f"{name:<15} vol today {state['next_volatility']:.2%}, rate {state['current_rate']:.4%}")
    return EXIT_OK if report["meets"] else EXIT_BELOW_TARGET


def _cmd_preset_build(args: argparse.Namespace) -> int:
    from .preset import build_preset, write_preset

    # Before the fits: a folder, a link or a missing folder as --out (whether an existing file is
    # a preset fundguard may replace is decided by write_preset).
    check_output_file(args.out, kind="preset", owned=lambda _: True)
    sources = []  # pairs, not a dict: build_preset refuses a market named twice
    for item in args.prices:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--prices takes NAME=FILE, got {item!r}")
        sources.append((name, path))
    command = "fundguard preset build --prices " + " ".join(f"{n}={Path(p).name}" for n, p in sources)
    preset = build_preset(sources, column=args.column, command=command)
    path = write_preset(preset, args.out)
    print(f"preset written to {path} ({', '.join(preset['models'])}; fit {preset['provenance']['fit_date']})")
    return EXIT_OK


def _cmd_fit(args: argparse.Namespace) -> int:
    from fundguard.models import fit_volatility, load_prices, log_returns

    from .config import parse_vol_spec

    spec = parse_vol_spec(args.spec, "--spec")
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
        json.dump(json_safe(rows), sys.stdout, indent=2, allow_nan=False)
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


class UsageError(FundguardError, ValueError):
    """A command-line argument that cannot be used."""


if __name__ == "__main__":
    sys.exit(main())
