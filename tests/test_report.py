"""The report a committee reads (report.md, report.html, the figures) and the pandas views a quant uses."""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _shared import two_market_price_files
from hypothesis import given
from hypothesis import strategies as st

from fundguard.optimizer import Frontier
from fundguard.optimizer.display import money, percent
from fundguard.optimizer.job.calibrate import calibrate
from fundguard.optimizer.job.html import inline, markdown_to_html
from fundguard.optimizer.job.report import FIGURES, render_html, render_report, stamp, write_outputs

SMALL = {"n_scenarios": 1_500, "certify_scenarios": 3_000, "horizon": 10, "seed": 11}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    files = two_market_price_files(tmp_path_factory.mktemp("prices"))
    config = {
        "scenarios": {**SMALL, "stress_dates": ["2022-06-01"], "shocks": [-0.25]},
        "problem": {"alpha": 0.02, "cost_of_capital": 0.01, "premium_weight": 0.05, "premium_max": 0.01,
                    "method": "certified"},
        "markets": [{"name": "AAA", "prices": str(files["AAA"]), "open_interest": 1e9, "daily_volume": 3e9},
                    {"name": "BBB", "prices": str(files["BBB"]), "open_interest": 5e8, "daily_volume": 2e9}],
    }
    return calibrate(config, frontier_alphas=(0.005, 0.02, 0.05))


@pytest.fixture(scope="module")
def outputs(result, tmp_path_factory):
    return write_outputs(result, tmp_path_factory.mktemp("run") / "out")


# -- formats ---------------------------------------------------------------------------------------


def test_money_and_percent_read_as_people_write_them():
    assert money(33_012_345, "USD") == "33.0m USD"
    assert money(1.2e9) == "1.20bn" and money(999.96e3) == "1.00m" and money(-2.5e6) == "-2.50m"
    assert money(850) == "850" and money(0) == "0" and money(5e6, trim=True) == "5m"
    assert money(float("nan")) == "n/a"
    assert (percent(0.01), percent(0.001), percent(0.0125), percent(1e-6)) == ("1%", "0.1%", "1.25%", "0.0001%")


@given(st.floats(min_value=1.0, max_value=9.99e14, allow_nan=False))
def test_money_round_trips_to_three_significant_digits(value):
    text = money(value)
    number, unit = re.fullmatch(r"(-?[0-9.]+)(k|m|bn|tn)?", text).groups()
    back = float(number) * {None: 1, "k": 1e3, "m": 1e6, "bn": 1e9, "tn": 1e12}[unit]
    assert back == pytest.approx(value, rel=5.01e-3)
    assert unit is None or 1 <= float(number) < 1000 or unit == "tn"


def test_inline_markdown_is_escaped_and_undoes_the_reports_escapes():
    assert inline(r"A\|B &lt;script&gt; **bold** `x<y`") == "A|B &lt;script&gt; <strong>bold</strong> <code>x&lt;y</code>"
    data = b"\x89PNG"
    page = markdown_to_html("| a | b |\n|---|---:|\n| 1 | A\\|B |\n\n![cap](f.png)", title="t", images={"f.png": data})
    assert "<td>1</td><td class=\"r\">A|B</td>" in page
    encoded = base64.b64encode(data).decode()
    assert f'src="data:image/png;base64,{encoded}"' in page


# -- the report ------------------------------------------------------------------------------------


def test_report_html_embeds_every_figure_and_the_markdown_links_them(result, outputs):
    page = (outputs / "report.html").read_text(encoding="utf-8")
    markdown = (outputs / "report.md").read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"]({name})" in markdown, name
        match = re.search(rf'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="[^"]*" data-file="{name}">', page)
        assert match, name
        assert base64.b64decode(match.group(1)) == (outputs / name).read_bytes(), name
    assert "src=\"http" not in page and "<script" not in page  # self-contained, inert
    # the first page, before the figures: answer, certificate, shares, assumptions, warnings
    first = markdown[: markdown.index("## Figures")]
    for part in ("## Answer", "certificate", "share of the fund target", "## Assumptions", "## Model warnings"):
        assert part in first, part
    assert money(result.policy.fund_target, "USD") in first and stamp(result) in html.unescape(page)


def test_the_frontier_is_the_answers_method_and_holds_the_answer(result):
    assert result.frontier and {p.method for p in result.frontier} == {result.policy.method}
    at_alpha = [p for p in result.frontier if p.alpha == result.policy.alpha]
    assert len(at_alpha) == 1
    # "certified" at the answer's level, on the run's own fresh set: the same kind of bound, close
    assert at_alpha[0].fund_target == pytest.approx(result.policy.fund_target, rel=0.25)
    fund = [p.fund_target for p in sorted(result.frontier, key=lambda p: p.alpha)]
    assert all(a >= b * (1 - 1e-12) for a, b in zip(fund, fund[1:]))  # looser alpha, smaller fund


def test_report_html_in_a_real_headless_browser(outputs, tmp_path):
    """Chromium renders the page: every figure decodes (naturalWidth > 0) and the screenshot is not blank."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    page = tmp_path / "report.html"
    probe = ("<script>window.addEventListener('load', () => { const imgs = [...document.images]; document.title = "
             "'loaded ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length + ' of ' + imgs.length; });</script>")
    page.write_text((outputs / "report.html").read_text(encoding="utf-8").replace("</body>", probe + "</body>"),
                    encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert f"<title>loaded {len(FIGURES)} of {len(FIGURES)}</title>" in dom
    shot = tmp_path / "screenshot.png"
    subprocess.run([*flags, "--window-size=1200,5200", f"--screenshot={shot}", page.as_uri()], capture_output=True,
                   timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (5200, 1200)
    ink = (pixels[..., :3].mean(axis=2) < 0.5).mean(axis=1)  # share of dark pixels per row
    assert (ink > 0.01).sum() > 1000  # text and figures down the page, not a blank or error page


def test_report_escapes_market_names_in_html(result):
    weird = {"AAA": "A|B <script>alert(1)</script>", "BBB": "x`y"}
    renamed = dataclasses.replace(
        result, policy=dataclasses.replace(result.policy, markets=tuple(weird[m] for m in result.policy.markets)),
        markets=tuple(weird[m] for m in result.markets), models={weird[m]: v for m, v in result.models.items()},
        tail={**result.tail, **{k: {weird[m]: v for m, v in result.tail[k].items()}
                                for k in ("tail_share_by_market", "expected_premium_income")}},
        analysis={}, notes=("<img src=x onerror=alert(1)>",))
    page = render_html(renamed, {})
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "A|B &lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert render_report(renamed).count("```") == 2


# -- pandas views, summaries, reprs ----------------------------------------------------------------


def test_rates_shares_and_frontier_are_pandas_indexed_by_market_and_alpha(result):
    rates = result.policy.rates
    assert isinstance(rates, pd.Series) and list(rates.index) == list(result.markets)
    np.testing.assert_array_equal(rates.to_numpy(), result.policy.premium_rates)
    rates.iloc[0] = -1.0  # a copy: the policy stays as it was
    assert result.policy.premium_rates[0] >= 0
    frame = result.frontier_frame
    assert list(frame.index) == [p.alpha for p in result.frontier] and frame.index.name == "alpha"
    np.testing.assert_array_equal(frame["fund_target"].to_numpy(), [p.fund_target for p in result.frontier])
    assert [c for c in frame.columns if c.startswith("rate ")] == [f"rate {m}" for m in result.markets]
    shares = result.fund_shares
    assert list(shares.index) == list(result.markets)
    assert float(shares.sum()) == pytest.approx(result.policy.fund_target - result.policy.floor, rel=1e-6)
    assert isinstance(Frontier(result.frontier).to_frame(), pd.DataFrame)


def test_reprs_are_short_and_summaries_carry_the_answer(result):
    for obj in (result, result.policy, Frontier(result.frontier), result.certificate):
        assert len(repr(obj)) < 300, type(obj).__name__
    assert money(result.policy.fund_target) in repr(result)
    text = result.summary()
    assert money(result.policy.fund_target, "USD") in text and "share of the fund" in text
    assert all(f"  {m}" in text for m in result.markets)
    assert f"{result.certificate.ruins:,} ruins in {result.certificate.n:,}" in text


# -- jobs: history, schema -------------------------------------------------------------------------


def test_history_appends_reads_back_and_refuses_rewrites(result, tmp_path):
    import sqlite3

    from fundguard.optimizer.job.history import HistoryError, read_history, record_run

    db = tmp_path / "runs.sqlite"
    first = record_run(db, result, out=tmp_path / "out")
    second = record_run(db, result)
    frame = read_history(db)
    assert list(frame.index) == [first, second] and first < second
    row = frame.loc[first]
    assert row["fund_target"] == result.policy.fund_target and row["rates"] == result.policy.rates_by_market()
    assert row["certificate_ruins"] == result.certificate.ruins and row["meets_target"] == result.meets_target
    assert row["config_digest"] == result.inputs["config_digest"] and row["started"] == result.started
    assert row["data_first"] <= row["data_last"] and set(row["data_range"]) == set(result.markets)
    assert list(read_history(db, last=1).index) == [second]
    with sqlite3.connect(db) as con:
        for statement in ("UPDATE fundguard_runs SET fund_target = 0", "DELETE FROM fundguard_runs"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(statement)
    assert len(read_history(db)) == 2
    # a file that is not ours is refused and left as it was
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE accounts (x)")
    before = other.read_bytes()
    with pytest.raises(HistoryError, match="another program's database"):
        record_run(other, result)
    text = tmp_path / "notes.txt"
    text.write_text("not a database " * 100)
    with pytest.raises(HistoryError, match="not a SQLite database"):
        record_run(text, result)
    assert other.read_bytes() == before and text.read_text() == "not a database " * 100


def test_history_and_schema_commands(result, tmp_path, capsys):
    import json

    from fundguard.optimizer.job.cli import EXIT_INPUT, EXIT_OK, main
    from fundguard.optimizer.job.history import record_run
    from fundguard.optimizer.job.report import RESULT_SCHEMA, validate_result

    db = tmp_path / "runs.sqlite"
    record_run(db, result)
    assert main(["history", str(db)]) == EXIT_OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "started", "config"] and f"{result.policy.fund_target:,.0f}" in table[1]
    assert main(["history", str(db), "--format", "json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["fund_target"] == result.policy.fund_target
    assert main(["history", str(db), "--format", "csv"]) == EXIT_OK
    assert capsys.readouterr().out.startswith("id,recorded_at,started,")
    assert main(["history", str(tmp_path / "missing.sqlite")]) == EXIT_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert main(["schema"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == RESULT_SCHEMA  # the shipped file is the code's schema
    assert validate_result(result.to_dict()) == []


def test_readme_python_views_exist_as_written(result, monkeypatch, capsys):
    """The README's "In Python" block, with calibrate() returning this module's small run."""
    import fundguard.optimizer as optimizer

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "result.frontier_frame" in b)
    monkeypatch.setattr(optimizer, "calibrate", lambda *a, **k: result)
    exec(compile(block, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == result.summary()


# -- progress: bars with counts on a terminal or with --progress, nothing on a pipe ---------------


def test_progress_bar_counts_to_the_total_and_closes_at_the_next_step(capsys):
    import threading

    from fundguard.optimizer.job.cli import _Progress

    progress = _Progress(enabled=True)
    progress("simulating 10,000 scenarios")
    threads = [threading.Thread(target=progress.advance, args=(done, 10_000, "scenarios"))
               for done in (2_500, 5_000, 7_500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress.advance(10_000, 10_000, "scenarios")
    assert progress._bar is None  # closed when done
    progress("building venue losses")
    progress.finish()
    err = capsys.readouterr().err
    assert "simulating 10,000 scenarios" in err and "10.0k/10.0k scenarios" in err
    assert err.rstrip().splitlines()[-1].endswith(" s") and "done in" in err
    quiet = _Progress(enabled=False)
    quiet("a step")
    quiet.advance(1, 2, "x")
    assert capsys.readouterr().err == ""


def _calibrate_in_a_process(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    import json as json_module
    import sys

    (tmp_path / "prices").mkdir(parents=True)
    files = two_market_price_files(tmp_path / "prices")
    toml = "\n".join([
        "[scenarios]", "n_scenarios = 1500", "certify_scenarios = 3000", "horizon = 10", "seed = 11", "",
        "[problem]", "alpha = 0.02", "cost_of_capital = 0.01", "premium_weight = 0.05", "premium_max = 0.01",
        'method = "exact"', "",
        *[line for name, oi in (("AAA", 1e9), ("BBB", 5e8)) for line in
          ("[[markets]]", f'name = "{name}"', f"prices = {json_module.dumps(str(files[name]))}",
           f"open_interest = {oi:.0f}", f"daily_volume = {3 * oi:.0f}", "")],
    ])
    (tmp_path / "fund.toml").write_text(toml, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "fundguard.optimizer.job.cli", "calibrate", "--config",
                           str(tmp_path / "fund.toml"), "--out", str(tmp_path / "out"), *flags],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_progress_on_a_pipe_only_when_asked(tmp_path):
    plain = _calibrate_in_a_process(tmp_path / "plain")
    assert plain.returncode in (0, 3), plain.stderr
    assert "[" not in plain.stderr and "scenarios" not in plain.stderr  # a pipe: no step lines, no bars
    asked = _calibrate_in_a_process(tmp_path / "asked", "--progress")
    assert asked.returncode == plain.returncode, asked.stderr
    assert re.search(r"\[\s*[\d.]+s\] simulating 1,500 \+ 3,000 scenarios", asked.stderr)
    assert "4500/4500 scenarios" in asked.stderr  # the simulation bar, counted to its total
    assert re.search(r"done in [\d.]+ s\s*$", asked.stderr)


# -- what a reviewer misread: stale data, a stress day at the floor, the curve beside the answer ---


def test_report_warns_of_stale_data_and_names_the_data_dates(result):
    text = render_report(result)
    last = max(str(m["last"])[:10] for m in result.models.values())
    assert f".. {last})" in text  # the assumptions name each model's data dates
    stale = dataclasses.replace(result, started="2099-01-01T00:00:00+00:00")
    warnings_section = render_report(stale).split("## Model warnings", 1)[1].split("## Figures", 1)[0]
    assert f"the volatility models' data end on {last}" in warnings_section and "refit on current prices" in warnings_section
    fresh = dataclasses.replace(result, started=f"{last}T12:00:00+00:00")
    assert "data end on" not in render_report(fresh)


def test_a_stress_scenario_that_sets_the_target_reads_at_the_floor(result):
    at_floor = [s for s in result.stress if s["lowest_fund"] <= result.policy.floor + 1e-6 * result.policy.fund_target]
    assert at_floor, "the fixture's -25% shock sets the fund target"
    text = render_report(result)
    assert text.count("yes, at the floor (this scenario sets the fund target)") == len(at_floor)


def test_the_report_explains_a_curve_that_misses_the_answer(result):
    moved = tuple(dataclasses.replace(p, fund_target=p.fund_target * 0.8) if p.alpha == result.policy.alpha else p
                  for p in result.frontier)
    text = render_report(dataclasses.replace(result, frontier=moved))
    assert "At the answer's alpha the curve reads" in text and "different samples" in text
    assert "At the answer's alpha the curve reads" not in render_report(result) or not any(
        p.alpha == result.policy.alpha and abs(p.fund_target / result.policy.fund_target - 1) <= 0.01
        for p in result.frontier)
