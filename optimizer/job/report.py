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

from .calibrate import RESULT_SCHEMA_VERSION, CalibrationResult
from .outputs import staged_output
from .summaries import fund_paths, required_fund

__all__ = ["RESULT_SCHEMA", "PLOTS", "write_outputs", "validate_result", "render_report", "summary_lines", "write_plots"]

#: Plot files and their size in pixels (width, height): 8 x 5 inches at 100 dpi.
PLOTS = {"fund_paths.png": (800, 500), "loss_distribution.png": (800, 500), "frontier.png": (800, 500),
         "tail_contributions.png": (800, 500)}
_DPI = 100

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
    return [
        f"fund target     {p.fund_target:,.0f}",
        f"premium rates   {rates}",
        f"certificate     {c.ruins} ruins in {c.n:,} fresh scenarios: P(ruin over {result.inputs['horizon']} periods) "
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


def render_report(result: CalibrationResult) -> str:
    """The one-page Markdown report: the answer first, then why."""
    t, inputs = result.tail, result.inputs
    lines = ["# fundguard calibration", "", "## Answer", "", "```", *summary_lines(result), "```", ""]
    lines += ["## Why", "", f"Horizon: {inputs['horizon']} periods; {inputs['n_scenarios']:,} scenarios "
              f"({inputs['innovations']} innovations) plus {inputs['n_stress']} stress scenario(s); seed {inputs['seed']}.",
              ""]
    lines += _method_lines(result.policy)
    lines += ["| horizon loss quantile | currency |", "|---|---:|"]
    lines += [f"| {float(q):.1%} | {v:,.0f} |" for q, v in t["horizon_loss_quantiles"].items()]
    lines += ["", f"Required fund at the chosen rates: VaR at alpha {t['required_fund_var']:,.0f}, "
              f"CVaR {t['required_fund_cvar']:,.0f}. Mean horizon loss {t['horizon_loss_mean']:,.0f}.", "",
              "| market | model | vol today | long-run vol (annual) | persistence | share of tail losses | expected premium income |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name in result.markets:
        m = result.models[name]
        annual = m["annualized_volatility"]
        lines.append(f"| {_md(name)} | {_md(m['spec'])} | {m['next_volatility']:.2%} | "
                     f"{'n/a' if annual is None or not math.isfinite(annual) else f'{annual:.0%}'} | "
                     f"{m['persistence']:.4f} | {t['tail_share_by_market'][name]:.1%} | "
                     f"{t['expected_premium_income'][name]:,.0f} |")
    lines += _decision_lines(result)
    if result.stress:
        lines += ["", "| stress scenario | horizon loss | lowest fund | survived |", "|---|---:|---:|---|"]
        lines += [f"| {_md(s['label'])} | {s['horizon_loss']:,.0f} | {s['lowest_fund']:,.0f} | {'yes' if s['survived'] else 'NO'} |"
                  for s in result.stress]
    if result.frontier:
        at = ", at the chosen rates" if result.policy.participation is not None else ""
        lines += ["", f"Cost of solvency (method {result.frontier[0].method!r}, on the same scenarios{at}):", "",
                  "| alpha | fund target | cost |", "|---:|---:|---:|"]
        lines += [f"| {p.alpha:.2%} | {p.fund_target:,.0f} | {p.objective:,.0f} |" for p in result.frontier]
    lines += _after_fund_lines(result)
    lines += ["", "## Notes", ""]
    lines += [f"- {_md(note)}" for note in result.notes] or ["- none"]
    sources = "; ".join(f"{_md(name)}: {_md(m['source'])}" for name, m in result.models.items())
    lines += ["", "## Inputs", "", f"- config digest `{inputs['config_digest']}`"
              + (f" ({_md(inputs['config_source'])})" if inputs["config_source"] else " (built-in preset)"),
              f"- models from: {sources}", f"- versions: {_md(inputs['versions'])}", "",
              "Statements are about the model's world; see `benchmarks/` for checks against real history.", ""]
    return "\n".join(lines)


def _decision_lines(result: CalibrationResult) -> list[str]:
    """The near-optimal set, each market's share of the fund and the sensitivities, when computed."""
    analysis = result.analysis or {}
    lines: list[str] = []
    allocation = analysis.get("allocation")
    near = analysis.get("near_optimal")
    part = result.policy.participation
    if part is not None:
        shares = part.shares(result.policy.premium_rates)
        lines += ["", f"Participation: the book answers the fees with elasticity {part.elasticity if part.elasticity is not None else 'n/a'}"
                  f" (fee cost {part.fee_cost}); at the chosen rates each market keeps "
                  + ", ".join(f"{_md(n)} {s:.2%}" for n, s in zip(result.markets, shares)) + " of its book."]
    if allocation:
        by_market = allocation["fund_target_by_market"]
        total = sum(by_market.values())
        basis = str(allocation.get("basis") or "")
        caption = ("a stress scenario sets the fund target, so the allocation splits its losses"
                   if basis.startswith("stress") else
                   f"each market's mean contribution over the {allocation.get('window')} scenarios nearest the quantile")
        lines += ["", f"Each market's share of the fund target (Euler allocation: {caption}):", "",
                  "| market | share of the fund target | rate | rate bounds |", "|---|---:|---:|---:|"]
        low = np.atleast_1d(result.inputs["problem"]["premium_min"])
        high = np.atleast_1d(result.inputs["problem"]["premium_max"])
        amounts = list(by_market.values())  # in market order (decision_analysis builds it so)
        for j, name in enumerate(result.markets):
            amount = amounts[j]
            lo, hi = float(low[min(j, low.size - 1)]), float(high[min(j, high.size - 1)])
            lines.append(f"| {_md(name)} | {amount:,.0f} ({amount / total:.0%}) | {result.policy.premium_rates[j]:.3%} | "
                         f"{lo:.2%}..{hi:.2%} |" if total > 0 else f"| {_md(name)} | {amount:,.0f} | "
                         f"{result.policy.premium_rates[j]:.3%} | {lo:.2%}..{hi:.2%} |")
    if near:
        low_f, high_f = near["fund_target_range"]
        what = (" (expected: capital, the fees' net cost and the losses the fund pays)"
                if part is not None and part.fee_cost == "derived" else "")
        verdict = ("**The decision is flat**: very different policies cost nearly the same."
                   if near["flat"] else "The decision is well conditioned: the near-optimal policies are close together.")
        lines += ["", f"Near-optimal set ({near['n_near']} of {near['n_evaluated']} policies evaluated within "
                  f"{near['tolerance']:.0%} of the least cost {near['optimal_cost']:,.0f}{what}, each with the exact-sample fund "
                  f"target at its rates): fund target {low_f:,.0f} to {high_f:,.0f}; "
                  + ", ".join(f"{_md(n)} rate {r[0]:.3%} to {r[1]:.3%}" for n, r in zip(result.markets, near["rate_ranges"]))
                  + f". {verdict}"]
    sens = analysis.get("sensitivities")
    if sens:
        lines += ["", "| the fund target's response to | bump | fund target | elasticity |", "|---|---:|---:|---:|"]
        for row in sens["rows"]:
            lines.append(f"| {row['label']} | {row['bump']} | {row['fund_target']:,.0f} | {row['elasticity']:+.2f} |")
        lines += ["", f"Exact-sample fund target at the chosen rates before the bumps: {sens['base_fund_target']:,.0f}. "
                  + sens["how"]]
    return lines


def _after_fund_lines(result: CalibrationResult) -> list[str]:
    """The ruin rule, the waterfall and ADL per allocation rule, and the capital per fund topology."""
    after = (result.analysis or {}).get("after_fund")
    if not after:
        return []
    wf = after["waterfall"]
    layers = ", ".join(f"{_md(layer['name'])} {layer['size']:,.0f}" for layer in wf["layers"]) or "none"
    lines = ["", "## After the fund", "", f"Ruin means {_md(after['ruin']['meaning'])}. Behind the fund: {layers}; then "
             f"auto-deleveraging of the winners' profits by the {_md(wf['allocation'])} rule (on the fit scenarios, "
             "stress scenarios excluded):", ""]
    if after.get("adl"):
        lines += ["| allocation | P(fund needs help) | P(ADL) | expected ADL | ADL given ADL | expected overshoot | "
                  "largest haircut (mean) | median haircut (mean) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for rule, s in after["adl"].items():
            lines.append(f"| {_md(rule)} | {s['p_need']:.2%} | {s['p_adl']:.2%} | {s['expected_adl']:,.0f} | "
                         f"{s['adl_given_adl']:,.0f} | {s['expected_overshoot']:,.0f} | "
                         + (f"{s['largest_haircut_mean']:.0%} | {s['median_haircut_mean']:.1%} |" if s["p_adl"] else "- | - |"))
    topologies = after.get("topologies")
    if topologies:
        pooled = topologies["pooled"]["total"]
        lines += ["", "Capital of each fund topology for the same solvency (P(any fund ruined) <= alpha at the chosen "
                  "rates, exact-sample on the fit scenarios):", "", "| topology | funds | total | vs pooled |",
                  "|---|---|---:|---:|"]
        for name, t in topologies.items():
            funds = "; ".join(f"{'+'.join(map(_md, g))} {f:,.0f}" for g, f in zip(t["groups"], t["funds"]))
            ratio = f"{t['total'] / pooled:.2f}x" if pooled > 0 else "n/a (pooled needs none)"
            lines.append(f"| {_md(name)} | {funds} | {t['total']:,.0f} | {ratio} |")
    return lines


def write_outputs(result: CalibrationResult, out: str | os.PathLike[str]) -> Path:
    """Write result.json, report.md and the PNG plots into ``out``, atomically as a whole.

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
    return out


def write_plots(result: CalibrationResult, folder: Path) -> None:
    """Write the PNG plots of :data:`PLOTS` into ``folder`` (matplotlib Figure objects, no pyplot state)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # Figure objects, no pyplot global state: thread-safe

    policy = result.policy
    random_part = result.scenarios.random_part()
    size = (PLOTS["fund_paths.png"][0] / _DPI, PLOTS["fund_paths.png"][1] / _DPI)

    fig = Figure(figsize=size, dpi=_DPI)
    ax = fig.add_subplot()
    paths = fund_paths(policy, random_part)
    periods = np.arange(0, paths.shape[1] + 1)
    full = np.column_stack([np.full(paths.shape[0], policy.fund_target), paths])
    for low, high, shade in ((0.005, 0.995, 0.15), (0.05, 0.95, 0.3), (0.25, 0.75, 0.5)):
        ax.fill_between(periods, np.quantile(full, low, axis=0), np.quantile(full, high, axis=0), alpha=shade,
                        color="tab:blue", lw=0, label=f"{low:.1%}-{high:.1%}")
    ax.plot(periods, np.median(full, axis=0), color="tab:blue", lw=1.5, label="median")
    ax.axhline(policy.floor, color="tab:red", ls="--", label="floor")
    ax.set(xlabel="period", ylabel="fund (currency units)", title="Fund paths under the policy")
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(folder / "fund_paths.png", dpi=_DPI)

    fig = Figure(figsize=size, dpi=_DPI)
    ax = fig.add_subplot()
    need = required_fund(policy, random_part)
    positive = need[need > 0]
    if positive.size:
        bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()) + 1e-9, 60)
        ax.hist(positive, bins=bins, color="tab:gray")
        ax.set_xscale("log")
    ax.axvline(result.tail["required_fund_var"], color="tab:orange", label="VaR at alpha")
    ax.axvline(result.tail["required_fund_cvar"], color="tab:red", label="CVaR at alpha")
    if policy.fund_target > 0:
        ax.axvline(policy.fund_target, color="tab:blue", lw=2, label="fund target")
    ax.set(xlabel="fund needed to survive the scenario (currency units)", ylabel="scenarios",
           title=f"Required fund per scenario ({(need == 0).mean():.0%} need none)")
    ax.legend(fontsize=8)
    fig.savefig(folder / "loss_distribution.png", dpi=_DPI)

    fig = Figure(figsize=size, dpi=_DPI)
    ax = fig.add_subplot()
    if result.frontier:
        alphas = [p.alpha for p in result.frontier]
        ax.plot(alphas, [p.objective for p in result.frontier], marker="o", label="capital cost")
        ax.plot(alphas, [p.fund_target for p in result.frontier], marker="s", label="fund target")
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "frontier not traced", ha="center", va="center", transform=ax.transAxes)
    ax.axvline(policy.alpha, color="tab:gray", ls=":")
    ax.set(xlabel="alpha (ruin probability over the horizon)", ylabel="currency units", title="Cost of solvency")
    fig.savefig(folder / "frontier.png", dpi=_DPI)

    fig = Figure(figsize=size, dpi=_DPI)
    ax = fig.add_subplot()
    shares = result.tail["tail_share_by_market"]
    ax.bar(list(shares), list(shares.values()), color="tab:purple")
    ax.set(ylabel="share of losses in the alpha-tail scenarios", title="Per-market contribution to tail losses",
           ylim=(0, 1))
    fig.savefig(folder / "tail_contributions.png", dpi=_DPI)
