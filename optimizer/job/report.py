"""Outputs of a calibration: ``result.json``, ``report.md`` and PNG plots, written all at once.

:func:`write_outputs` stages every file in a folder beside ``out`` and swaps it in with one
atomic rename (:func:`~fundguard.optimizer.job.outputs.staged_output`), so an interrupted run leaves
the previous complete outputs. ``RESULT_SCHEMA`` is the JSON Schema of ``result.json``;
:func:`validate_result` checks a document against it without extra dependencies.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..display import money, percent
from .calibrate import RESULT_SCHEMA_VERSION, CalibrationResult
from .history import data_range
from .html import markdown_to_html
from .outputs import staged_output
from .summaries import fund_paths, required_fund

__all__ = ["RESULT_SCHEMA", "PLOTS", "FIGURES", "write_outputs", "validate_result", "render_report", "render_html",
           "summary_lines", "write_plots", "stamp"]

#: Plot files and their size in pixels (width, height): 8 x 5 inches at 200 dpi.
PLOTS = {"fund_paths.png": (1600, 1000), "loss_distribution.png": (1600, 1000), "frontier.png": (1600, 1000),
         "tail_contributions.png": (1600, 1000)}
_DPI = 200

_NUMBER = {"type": ["number", "null"]}
_RATES = {"type": "object", "additionalProperties": {"type": "number"}}
_CERTIFICATE = {
    "type": "object",
    "required": ["n", "ruins", "ruin_rate", "upper_bound", "confidence"],
    "properties": {"n": {"type": "integer", "minimum": 1}, "ruins": {"type": "integer", "minimum": 0},
                   "ruin_rate": {"type": "number", "minimum": 0}, "upper_bound": {"type": "number", "minimum": 0},
                   "confidence": {"type": "number", "minimum": 0}},
}

#: JSON Schema (draft 2020-12 subset) of result.json, version RESULT_SCHEMA_VERSION.
RESULT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "fundguard calibration result",
    "type": "object",
    "required": ["schema_version", "policy", "certificate", "meets_target", "markets", "models", "tail", "stress",
                 "frontier", "inputs", "notes", "run"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"type": "integer", "enum": [RESULT_SCHEMA_VERSION]},
        "policy": {
            "type": "object",
            "required": ["method", "status", "fund_target", "premium_rates", "objective", "in_sample_ruin",
                         "n_scenarios", "alpha", "floor", "solver"],
            "properties": {"method": {"type": "string"}, "status": {"type": "string"},
                           "fund_target": {"type": "number", "minimum": 0}, "premium_rates": _RATES,
                           "objective": {"type": "number"}, "in_sample_ruin": {"type": "number", "minimum": 0},
                           "n_scenarios": {"type": "integer"}, "alpha": {"type": "number"},
                           "floor": {"type": "number"}, "solver": {"type": "string"},
                           "epsilon": _NUMBER, "beta": _NUMBER, "discarded": {"type": ["integer", "null"]},
                           "certificate": {"oneOf": [_CERTIFICATE, {"type": "null"}]}},
        },
        "certificate": _CERTIFICATE,
        "meets_target": {"type": "boolean"},
        "markets": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "models": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["source", "spec", "params", "persistence", "next_volatility"]}},
        "tail": {"type": "object", "required": ["horizon_loss_quantiles", "required_fund_var", "required_fund_cvar",
                                                "tail_share_by_market", "expected_premium_income"]},
        "stress": {"type": "array", "items": {
            "type": "object", "required": ["label", "horizon_loss", "lowest_fund", "survived"]}},
        "frontier": {"type": "array", "items": {"type": "object", "required": ["alpha", "fund_target", "objective"]}},
        "inputs": {"type": "object", "required": ["config_digest", "seed", "method", "versions", "n_scenarios",
                                                  "certify_scenarios", "horizon"]},
        "analysis": {"type": "object"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "run": {"type": "object", "required": ["timings"]},
    },
}


def validate_result(document: Any, schema: Mapping[str, Any] = RESULT_SCHEMA, path: str = "$") -> list[str]:
    """Check ``document`` against the JSON Schema subset used here; returns the violations (empty if valid)."""
    errors: list[str] = []
    if "oneOf" in schema:
        matches = [s for s in schema["oneOf"] if not validate_result(document, s, path)]
        if len(matches) != 1:
            errors.append(f"{path}: matches {len(matches)} of the oneOf alternatives")
        return errors
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(document, k) for k in kinds):
            return [f"{path}: expected {' or '.join(kinds)}, got {type(document).__name__}"]
    if "enum" in schema and document not in schema["enum"]:
        errors.append(f"{path}: {document!r} not in {schema['enum']}")
    if "minimum" in schema and isinstance(document, (int, float)) and document < schema["minimum"]:
        errors.append(f"{path}: {document} < minimum {schema['minimum']}")
    if isinstance(document, dict):
        for key in schema.get("required", []):
            if key not in document:
                errors.append(f"{path}: missing required key {key!r}")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in document.items():
            if key in properties:
                errors += validate_result(value, properties[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r}")
            elif isinstance(extra, Mapping):
                errors += validate_result(value, extra, f"{path}.{key}")
    if isinstance(document, list):
        if len(document) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(document):
                errors += validate_result(item, schema["items"], f"{path}[{i}]")
    return errors


def _is_type(value: Any, kind: str) -> bool:
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        "null": value is None,
    }[kind]


# Markdown punctuation that can start emphasis, code, links, tables or HTML inside a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def _plain(text: Any) -> str:
    """``text`` on one line: control characters (newlines, tabs, terminal escapes) written as escapes."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def _md(text: Any) -> str:
    """``text`` as inert Markdown inline text (a table cell, a list item): one line, Markdown
    punctuation backslash-escaped and ``& < >`` as entities, so that a market named ``A|B``,
    ``<script>`` or with backticks shows as written and cannot break the table or inject HTML."""
    text = _plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def summary_lines(result: CalibrationResult) -> list[str]:
    """The answer in a few lines: fund target, rates, certificate (the first lines of the CLI and report).

    Market names are made one-line (:func:`_plain`), so that the lines stay lines on a terminal
    and inside the report's code block.
    """
    p, c = result.policy, result.certificate
    rates = ", ".join(f"{_plain(m)} {r:.4%}" for m, r in p.rates_by_market().items())
    verdict = "meets" if result.meets_target else "DOES NOT meet"
    oi = _open_interest(result)
    share = f"; {p.fund_target / oi:.2%} of open interest" if oi > 0 else ""
    return [
        f"fund target     {money(p.fund_target, result.currency)} ({p.fund_target:,.0f}{share})",
        f"premium rates   {rates}",
        f"certificate     {c.ruins} ruins in {c.n:,} fresh scenarios: P(ruin over {result.inputs['horizon']} days) "
        f"<= {c.upper_bound:.3%} at {c.confidence:.0%} confidence ({verdict} alpha = {p.alpha:.2%})",
        f"method          {p.method} ({p.status}; solver {p.solver}), in-sample ruin {p.in_sample_ruin:.3%} "
        f"on {p.n_scenarios:,} scenarios",
    ]


def _method_lines(policy: Any) -> list[str]:
    """What the method promises (``details["guarantee"]``) and, for "certified", how its fund target was set."""
    details = policy.details or {}
    lines = []
    if details.get("guarantee"):
        lines += [f"What method {policy.method} promises: {details['guarantee']}.", ""]
    info = details.get("certified")
    if info:
        where = ("fresh scenarios drawn from the run's model" if info.get("source") == "fresh"
                 else "the half of the scenarios the rates were not chosen on")
        lines += [f"The rates are method {details.get('base', 'exact')}'s on the {policy.n_scenarios:,} fit scenarios; the "
                  f"fund target is set on {info['n_fresh']:,} {where} (at most {info['ruins_allowed']} of them "
                  f"ruined; measured tail elasticity {info['tail_elasticity']:.2f}, expected excess over the alpha-quantile "
                  f"about {info['expected_excess']:.1%}), by {info['set_by']}. The fund target on the fit scenarios "
                  f"alone would be {info['training_fund_target']:,.0f}.", ""]
    tail = details.get("tail")
    if tail and tail.get("dominated"):
        lines += [f"Warning: the CVaR behind this fund target rests on a few scenarios (fitted tail index "
                  f"{tail['tail_index']:.2f}); it grows with the number of scenarios.", ""]
    return lines


#: The figures in the report's order, with their captions.
FIGURES = {
    "fund_paths.png": "Fund paths under the policy: the fund's level per day, quantile bands over the fit scenarios",
    "loss_distribution.png": "The fund each scenario needs to stay above its floor, against the fund target",
    "frontier.png": "Cost of solvency: the fund target and the total cost (the objective) per ruin level, the answer marked",
    "tail_contributions.png": "Each market's share of the fund target and of the losses in the alpha-tail scenarios",
}


def stamp(result: CalibrationResult) -> str:
    """The run's identity, printed on every figure and at the top of the report: the run's date,
    seed, config digest (first 12 hex digits) and method."""
    inputs = result.inputs
    when = (result.started or "date not recorded").replace("T", " ", 1).replace("+00:00", " UTC")
    return (f"fundguard run {when} | seed {inputs['seed']} | config {str(inputs['config_digest'])[:12]} | "
            f"method {result.policy.method}")


def render_report(result: CalibrationResult) -> str:
    """The Markdown report: a first page with the answer, the certificate, each market's share of
    the fund, the sensitivities, the assumptions and the model's warnings; then the figures
    (linked PNG files) and why."""
    t, inputs = result.tail, result.inputs
    lines = ["# fundguard calibration", "", _md(stamp(result)), "", "## Answer", "", "```", *summary_lines(result),
             "```", ""]
    lines += _method_lines(result.policy)
    lines += _allocation_lines(result)
    lines += _sensitivity_lines(result)
    lines += _assumption_lines(result)
    lines += ["", "## Model warnings", ""]
    lines += [f"- {_md(note)}" for note in _model_warnings(result)] or ["- none"]
    lines += ["", "## Figures", ""]
    for name, caption in FIGURES.items():
        lines += [f"![{_md(caption)}]({name})", ""]
    lines += ["## Why", "", f"Horizon: {inputs['horizon']} days; {inputs['n_scenarios']:,} scenarios "
              f"({inputs['innovations']} innovations) plus {inputs['n_stress']} stress scenario(s); seed {inputs['seed']}.",
              ""]
    lines += ["| horizon loss quantile | loss |", "|---|---:|"]
    lines += [f"| {float(q):.1%} | {_money(v, result)} |" for q, v in t["horizon_loss_quantiles"].items()]
    lines += ["", f"Required fund at the chosen rates: VaR at alpha {_money(t['required_fund_var'], result)}, "
              f"CVaR {_money(t['required_fund_cvar'], result)}. Mean horizon loss {_money(t['horizon_loss_mean'], result)}.",
              "", "| market | model | vol today | long-run vol (annual) | persistence | share of tail losses | "
              "expected premium income |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in result.markets:
        m = result.models[name]
        annual = m["annualized_volatility"]
        lines.append(f"| {_md(name)} | {_md(m['spec'])} | {m['next_volatility']:.2%} | "
                     f"{'n/a' if annual is None or not math.isfinite(annual) else f'{annual:.0%}'} | "
                     f"{m['persistence']:.4f} | {t['tail_share_by_market'][name]:.1%} | "
                     f"{_money(t['expected_premium_income'][name], result)} |")
    lines += _decision_lines(result)
    if result.stress:
        lines += ["", "| stress scenario | horizon loss | lowest fund | survived |", "|---|---:|---:|---|"]
        floor = result.policy.floor
        margin = 1e-6 * max(abs(result.policy.fund_target), 1.0)
        lines += [f"| {_md(s['label'])} | {_money(s['horizon_loss'], result)} | {_money(s['lowest_fund'], result)} | "
                  + ("NO" if not s["survived"] else
                     "yes, at the floor (this scenario sets the fund target)" if s["lowest_fund"] <= floor + margin
                     else "yes") + " |" for s in result.stress]
    if result.frontier:
        at = ", at the chosen rates" if result.policy.participation is not None else ""
        lines += ["", f"Cost of solvency (method {result.frontier[0].method!r}, on the same scenarios{at}):", "",
                  "| alpha | fund target | share of open interest | total cost (objective) |", "|---:|---:|---:|---:|"]
        oi = _open_interest(result)
        lines += [f"| {percent(p.alpha)} | {_money(p.fund_target, result)} | "
                  f"{f'{p.fund_target / oi:.2%}' if oi else 'n/a'} | {_money(p.objective, result)} |" for p in result.frontier]
        same = [p for p in result.frontier if p.alpha == result.policy.alpha]
        if same and abs(same[0].fund_target / result.policy.fund_target - 1.0) > 0.01:
            lines += ["", f"At the answer's alpha the curve reads {_money(same[0].fund_target, result)} against the "
                      f"answer's {_money(result.policy.fund_target, result)}: the curve is traced on "
                      f"{result.inputs['certify_scenarios']:,} certificate scenarios"
                      + (" at the chosen rates" if at else "") + ", while the answer's fund target was set on its own "
                      "scenarios (for method 'certified', its own fresh draw); the two are estimates of the same quantile "
                      "on different samples."]
    lines += _after_fund_lines(result)
    sources = "; ".join(f"{_md(name)}: {_md(m['source'])}" for name, m in result.models.items())
    lines += ["", "## Inputs", "", f"- config digest `{inputs['config_digest']}`"
              + (f" ({_md(inputs['config_source'])})" if inputs["config_source"] else " (built-in preset)"),
              f"- models from: {sources}", f"- versions: {_md(inputs['versions'])}", "",
              "Statements are about the model's world; see `benchmarks/` for checks against real history.", ""]
    return "\n".join(lines)


def render_html(result: CalibrationResult, figures: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page: :func:`render_report` with ``figures`` (file
    name -> PNG bytes) embedded where the Markdown links them."""
    return markdown_to_html(render_report(result), title=f"fundguard calibration: {stamp(result)}", images=figures)


def _money(value: float, result: CalibrationResult) -> str:
    return money(value, result.currency)


def _open_interest(result: CalibrationResult) -> float:
    venue = result.inputs.get("venue") or {}
    return float(sum(m.get("open_interest", 0.0) for m in venue.get("markets", [])))


def _allocation_lines(result: CalibrationResult) -> list[str]:
    """Each market's share of the fund target (Euler allocation), its rate and bounds."""
    allocation = (result.analysis or {}).get("allocation")
    if not allocation:
        return []
    by_market = allocation["fund_target_by_market"]
    total = sum(by_market.values())
    basis = str(allocation.get("basis") or "")
    caption = ("a stress scenario sets the fund target, so the allocation splits its losses"
               if basis.startswith("stress") else
               f"each market's mean contribution over the {allocation.get('window')} scenarios nearest the quantile")
    lines = ["", f"Each market's share of the fund target (Euler allocation: {caption}):", "",
             "| market | share of the fund target | rate | rate bounds | open interest |", "|---|---:|---:|---:|---:|"]
    low = np.atleast_1d(result.inputs["problem"]["premium_min"])
    high = np.atleast_1d(result.inputs["problem"]["premium_max"])
    venue = {m["name"]: m for m in (result.inputs.get("venue") or {}).get("markets", [])}
    amounts = list(by_market.values())  # in market order (decision_analysis builds it so)
    for j, name in enumerate(result.markets):
        amount = amounts[j]
        lo, hi = float(low[min(j, low.size - 1)]), float(high[min(j, high.size - 1)])
        share = f" ({amount / total:.0%})" if total > 0 else ""
        oi = venue.get(name, {}).get("open_interest")
        lines.append(f"| {_md(name)} | {_money(amount, result)}{share} | {result.policy.premium_rates[j]:.3%} | "
                     f"{lo:.2%}..{hi:.2%} | {_money(oi, result) if oi is not None else 'n/a'} |")
    return lines


def _sensitivity_lines(result: CalibrationResult) -> list[str]:
    sens = (result.analysis or {}).get("sensitivities")
    if not sens:
        return []
    lines = ["", "## Sensitivities", "", "| the fund target's response to | bump | fund target | elasticity |",
             "|---|---:|---:|---:|"]
    for row in sens["rows"]:
        lines.append(f"| {_md(row['label'])} | {_md(row['bump'])} | {_money(row['fund_target'], result)} | "
                     f"{row['elasticity']:+.2f} |")
    lines += ["", f"Exact-sample fund target at the chosen rates before the bumps: "
              f"{_money(sens['base_fund_target'], result)}. " + _md(sens["how"])]
    return lines


def _assumption_lines(result: CalibrationResult) -> list[str]:
    """What the answer assumes: horizon, scenarios, models, venue, ruin rule, confidence."""
    inputs, p = result.inputs, result.policy
    oi = _open_interest(result)
    models = ", ".join(f"{_md(name)} {_md(m['spec'])} ({_md(m['source'])}{_data_dates(m)})"
                       for name, m in result.models.items())
    after = (result.analysis or {}).get("after_fund") or {}
    ruin = after.get("ruin", {}).get("meaning") or "the fund below its floor"
    lines = ["", "## Assumptions", "",
             f"- Horizon {inputs['horizon']} days; ruin means {_md(ruin)} on any day (floor "
             f"{_money(p.floor, result)}); target P(ruin) <= {percent(p.alpha)}, certified at "
             f"{percent(inputs['confidence'])} confidence.",
             f"- Scenarios: {inputs['n_scenarios']:,} simulated paths ({_md(inputs['innovations'])} innovations) to fit, "
             f"{inputs['certify_scenarios']:,} fresh ones for the certificate, {inputs['n_stress']} stress scenario(s).",
             f"- Volatility models: {models}.",
             f"- Venue: open interest {_money(oi, result)} in all; the fund target is "
             f"{f'{p.fund_target / oi:.2%}' if oi else 'n/a'} of it (real venues' funds hold roughly 1-5%).",
             "- Everything stated holds in the model's world; the benchmarks check the model against real history."]
    return lines


def _data_dates(model: Mapping[str, Any]) -> str:
    """", returns 2017-08-18 .. 2025-12-31" for a model whose data dates are recorded, else ""."""
    dates = data_range({"m": model})["m"]
    return f", returns {str(dates[0])[:10]} .. {str(dates[1])[:10]}" if isinstance(dates, list) and all(dates) else ""


def _model_warnings(result: CalibrationResult) -> list[str]:
    """The run's notes, and a warning when the models' data end well before the run: "today's"
    volatility is then that day's."""
    notes = list(result.notes)
    lasts = [str(r[1]) for r in data_range(result.models).values() if isinstance(r, list) and r[1]]
    if lasts and result.started:
        import datetime

        try:
            last = max(datetime.date.fromisoformat(d[:10]) for d in lasts)
            run = datetime.date.fromisoformat(result.started[:10])
        except ValueError:
            return notes
        if (run - last).days > 7:
            notes.append(f"the volatility models' data end on {last} ({(run - last).days} days before this run): "
                         "the scenarios start from the volatility of that day, not of today; refit on current "
                         "prices before acting on the figures")
    return notes


def _decision_lines(result: CalibrationResult) -> list[str]:
    """Participation and the near-optimal set, when computed."""
    analysis = result.analysis or {}
    lines: list[str] = []
    near = analysis.get("near_optimal")
    part = result.policy.participation
    if part is not None:
        shares = part.shares(result.policy.premium_rates)
        lines += ["", f"Participation: the book answers the fees with elasticity {part.elasticity if part.elasticity is not None else 'n/a'}"
                  f" (fee cost {part.fee_cost}); at the chosen rates each market keeps "
                  + ", ".join(f"{_md(n)} {s:.2%}" for n, s in zip(result.markets, shares)) + " of its book."]
    if near:
        low_f, high_f = near["fund_target_range"]
        what = (" (expected: capital, the fees' net cost and the losses the fund pays)"
                if part is not None and part.fee_cost == "derived" else "")
        verdict = ("**The decision is flat**: very different policies cost nearly the same."
                   if near["flat"] else "The decision is well conditioned: the near-optimal policies are close together.")
        lines += ["", f"Near-optimal set ({near['n_near']} of {near['n_evaluated']} policies evaluated within "
                  f"{near['tolerance']:.0%} of the least cost {_money(near['optimal_cost'], result)}{what}, each with the "
                  f"exact-sample fund target at its rates): fund target {_money(low_f, result)} to {_money(high_f, result)}; "
                  + ", ".join(f"{_md(n)} rate {r[0]:.3%} to {r[1]:.3%}" for n, r in zip(result.markets, near["rate_ranges"]))
                  + f". {verdict}"]
    return lines


def _after_fund_lines(result: CalibrationResult) -> list[str]:
    """The ruin rule, the waterfall and ADL per allocation rule, and the capital per fund topology."""
    after = (result.analysis or {}).get("after_fund")
    if not after:
        return []
    wf = after["waterfall"]
    layers = ", ".join(f"{_md(layer['name'])} {_money(layer['size'], result)}" for layer in wf["layers"]) or "none"
    lines = ["", "## After the fund", "", f"Ruin means {_md(after['ruin']['meaning'])}. Behind the fund: {layers}; then "
             f"auto-deleveraging of the winners' profits by the {_md(wf['allocation'])} rule (on the fit scenarios, "
             "stress scenarios excluded):", ""]
    if after.get("adl"):
        lines += ["| allocation | P(fund needs help) | P(ADL) | expected ADL | ADL given ADL | expected overshoot | "
                  "largest haircut (mean) | median haircut (mean) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for rule, s in after["adl"].items():
            lines.append(f"| {_md(rule)} | {s['p_need']:.2%} | {s['p_adl']:.2%} | {_money(s['expected_adl'], result)} | "
                         f"{_money(s['adl_given_adl'], result)} | {_money(s['expected_overshoot'], result)} | "
                         + (f"{s['largest_haircut_mean']:.0%} | {s['median_haircut_mean']:.1%} |" if s["p_adl"] else "- | - |"))
    topologies = after.get("topologies")
    if topologies:
        pooled = topologies["pooled"]["total"]
        lines += ["", "Capital of each fund topology for the same solvency (P(any fund ruined) <= alpha at the chosen "
                  "rates, exact-sample on the fit scenarios):", "", "| topology | funds | total | vs pooled |",
                  "|---|---|---:|---:|"]
        for name, t in topologies.items():
            funds = "; ".join(f"{'+'.join(map(_md, g))} {_money(f, result)}" for g, f in zip(t["groups"], t["funds"]))
            ratio = f"{t['total'] / pooled:.2f}x" if pooled > 0 else "n/a (pooled needs none)"
            lines.append(f"| {_md(name)} | {funds} | {_money(t['total'], result)} | {ratio} |")
    return lines


def write_outputs(result: CalibrationResult, out: str | os.PathLike[str]) -> Path:
    """Write result.json, report.md (linking the PNG plots), report.html (self-contained: the
    figures embedded) and the PNG plots into ``out``, atomically as a whole.

    ``out`` must be missing, empty or a folder a previous run published
    (:func:`~fundguard.optimizer.job.outputs.check_output_folder`), else ``OutputPlaceError``; an
    operating-system error while writing (read-only, full disk) is ``OutputWriteError``.
    """
    out = Path(out)
    document = result.to_dict()
    problems = validate_result(document)
    if problems:  # a bug, not a user error: never publish a document that breaks its schema
        raise RuntimeError(f"result.json would not validate: {problems[:3]}")
    with staged_output(out) as stage:
        (stage / "result.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (stage / "report.md").write_text(render_report(result), encoding="utf-8")
        write_plots(result, stage)
        figures = {name: (stage / name).read_bytes() for name in FIGURES}
        (stage / "report.html").write_text(render_html(result, figures), encoding="utf-8")
    return out


def _axes_money(ax: Any, axis: str) -> None:
    """Tick labels on ``axis`` ("x" or "y") in k / m / bn (the axis label names the currency)."""
    from matplotlib.ticker import FuncFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _: money(value, trim=True)))


def _axes_percent(ax: Any, axis: str) -> None:
    from matplotlib.ticker import FuncFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _: percent(value)))


def _figure(result: CalibrationResult, title: str, rows: int = 1) -> tuple[Any, Any]:
    """A Figure of the report's size with the run's stamp at its foot (Figure objects, no pyplot
    global state: thread-safe)."""
    from matplotlib.figure import Figure

    width, height = PLOTS["fund_paths.png"]
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, layout="constrained")
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.get_layout_engine().set(h_pad=0.12)
    fig.text(0.995, 0.005, stamp(result), ha="right", va="bottom", fontsize=7, color="#57606a")
    return fig, (fig.add_subplot() if rows == 1 else fig.subplots(rows, 1, sharex=True))


def write_plots(result: CalibrationResult, folder: Path) -> None:
    """Write the PNG plots of :data:`PLOTS` into ``folder``: money in k / m / bn with the currency,
    probabilities in percent, time in days, the run's stamp (date, seed, config digest) on each."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.ticker import NullFormatter

    policy = result.policy
    currency = result.currency or "currency units"
    random_part = result.scenarios.random_part()
    horizon = result.inputs["horizon"]

    fig, ax = _figure(result, "Fund paths under the policy")
    paths = fund_paths(policy, random_part)
    days = np.arange(0, paths.shape[1] + 1)
    full = np.column_stack([np.full(paths.shape[0], policy.fund_target), paths])
    for low, high, shade in ((0.005, 0.995, 0.15), (0.05, 0.95, 0.3), (0.25, 0.75, 0.5)):
        ax.fill_between(days, np.quantile(full, low, axis=0), np.quantile(full, high, axis=0), alpha=shade,
                        color="tab:blue", lw=0, label=f"{percent(low)} to {percent(high)} of scenarios")
    ax.plot(days, np.median(full, axis=0), color="tab:blue", lw=1.5, label="median")
    ax.axhline(policy.floor, color="tab:red", ls="--", label=f"floor ({money(policy.floor)})")
    ax.axhline(policy.fund_target, color="tab:gray", ls=":", lw=1, label=f"fund target ({money(policy.fund_target)})")
    ax.set(xlabel="day", ylabel=f"fund ({currency})", xlim=(0, paths.shape[1]))
    ax.set_title(f"{random_part.n_scenarios:,} fit scenarios over {horizon} days", fontsize=9)
    _axes_money(ax, "y")
    ax.legend(loc="best", fontsize=8)
    fig.savefig(folder / "fund_paths.png", dpi=_DPI)

    fig, ax = _figure(result, "The fund each scenario needs")
    need = required_fund(policy, random_part)
    positive = need[need > 0]
    if positive.size:
        bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()) + 1e-9, 60)
        ax.hist(positive, bins=bins, color="tab:gray")
        ax.set_xscale("log")
    alpha = percent(policy.alpha)
    ax.axvline(result.tail["required_fund_var"], color="tab:orange", label=f"VaR at {alpha} "
               f"({money(result.tail['required_fund_var'])})")
    ax.axvline(result.tail["required_fund_cvar"], color="tab:red", label=f"CVaR at {alpha} "
               f"({money(result.tail['required_fund_cvar'])})")
    if policy.fund_target > 0:
        ax.axvline(policy.fund_target, color="tab:blue", lw=2, label=f"fund target ({money(policy.fund_target)})")
    ax.set(xlabel=f"fund needed to stay above the floor over {horizon} days ({currency}, log scale)",
           ylabel="scenarios")
    ax.set_title(f"{percent(float((need == 0).mean()))} of the scenarios need none", fontsize=9)
    _axes_money(ax, "x")
    ax.legend(fontsize=8)
    fig.savefig(folder / "loss_distribution.png", dpi=_DPI)

    fig, (ax, low) = _figure(result, "Cost of solvency", rows=2)
    if result.frontier:
        alphas = [p.alpha for p in result.frontier]
        ax.plot(alphas, [p.fund_target for p in result.frontier], marker="s", color="tab:blue",
                label=f"fund target (method {result.frontier[0].method})")
        low.plot(alphas, [p.objective for p in result.frontier], marker="o", color="tab:orange",
                 label="total cost (the objective)")
        for axes, value in ((ax, policy.fund_target), (low, policy.objective)):
            axes.plot([policy.alpha], [value], marker="*", ms=16, color="tab:red", ls="none", markeredgecolor="black",
                      label=f"the answer: {money(value)} at {alpha}", zorder=5)
            axes.legend(fontsize=8, loc="upper right")
        ax.set_xscale("log")
        _axes_percent(low, "x")
        low.xaxis.set_minor_formatter(NullFormatter())
        low.set_xticks(sorted(set(alphas) | {policy.alpha}))
    else:
        ax.text(0.5, 0.5, "frontier not traced", ha="center", va="center", transform=ax.transAxes)
    ax.set(ylabel=f"fund target ({currency})")
    low.set(xlabel=f"alpha: P(ruin over {horizon} days), log scale", ylabel=f"total cost ({currency})")
    _axes_money(ax, "y")
    _axes_money(low, "y")
    fig.savefig(folder / "frontier.png", dpi=_DPI)

    fig, ax = _figure(result, "Where the fund's risk comes from")
    shares = result.tail["tail_share_by_market"]
    names = list(shares)
    x = np.arange(len(names))
    allocation = ((result.analysis or {}).get("allocation") or {}).get("fund_target_by_market") or {}
    total = sum(allocation.values())
    width = 0.4 if allocation and total > 0 else 0.8
    ax.bar(x - (width / 2 if width < 0.8 else 0), list(shares.values()), width, color="tab:purple",
           label=f"share of losses in the {alpha} tail scenarios")
    if width < 0.8:
        ax.bar(x + width / 2, [allocation.get(n, 0.0) / total for n in names], width, color="tab:green",
               label="share of the fund target (Euler allocation)")
    ax.set_xticks(x, names)
    ax.set(ylabel="share", ylim=(0, 1))
    _axes_percent(ax, "y")
    ax.legend(fontsize=8)
    fig.savefig(folder / "tail_contributions.png", dpi=_DPI)
