"""The rendered report in a real headless browser (Debian's chromium through playwright).

Skipped, with the reason, where chromium or playwright is missing; CI installs both:
``apt-get install -y --no-install-recommends chromium`` and ``pip install playwright``
(never ``playwright install``).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import pytest

from report_fixtures import make_suite, standard_store

CHROMIUM = next(filter(None, (shutil.which(n) for n in ("chromium", "chromium-browser"))), None)
pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="playwright not installed (pip install playwright)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y "
                                                "--no-install-recommends chromium)"),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from bench.report import render

    root = tmp_path_factory.mktemp("store")
    standard_store(root / "results")
    return render(root / "results", root / "reports")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                              env={"HOME": tempfile.mkdtemp()})
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records JavaScript errors, failed requests and dialogs (alert = XSS)."""
    page = browser.new_page()
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url}"))
    page.on("dialog", lambda d: (page.errors.append(f"dialog: {d.message}"), d.dismiss()))
    yield page
    page.close()


def traces(page) -> int:
    """Traces drawn by plotly in SVG (lines and bars)."""
    return page.locator(".js-plotly-plot svg.main-svg .trace").count()


def test_click_through_index_suite_run(page, report):
    page.goto(report.as_uri())
    assert page.title().startswith("Reports")
    assert page.locator("article.suite").count() == 3
    page.locator("a.suite-link", has_text="Demo suite").click()
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    assert page.url.endswith("/demo/index.html")
    assert page.locator("h1").inner_text() == "Demo suite"
    plots = page.locator(".js-plotly-plot")
    assert plots.count() >= 2 + 4  # anytime, budgeted, one training figure per method
    assert traces(page) > 10
    assert page.get_by_text("paired t-test over seeds").count() > 0
    assert page.get_by_text("Ablations: each variant minus its method").count() == 1
    assert page.get_by_text("computed from the saved logits of all exits").count() >= 1
    # a CSV link points at a file beside the page
    href = page.locator("a.csv").first.get_attribute("href")
    assert (Path(report).parent / "demo" / href).is_file()
    page.locator("#runs a", has_text="tiny3-boostnet-s0").click()
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    assert page.url.endswith("/demo/runs/tiny3-boostnet-s0.html")
    assert page.get_by_text("Share of test images leaving at each exit").count() == 1
    assert traces(page) > 0
    page.locator("#nav-suite").click()
    assert page.url.endswith("/demo/index.html")
    page.locator("#nav-index").click()
    assert page.url.endswith("/index.html") and "/demo/" not in page.url
    assert page.errors == []


def test_hover_shows_values(page, report):
    page.goto((Path(report).parent / "demo" / "index.html").as_uri())
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    plot = page.locator(".js-plotly-plot").first
    n = page.evaluate("() => document.querySelector('.js-plotly-plot').data.length")
    assert n >= 4
    point = plot.locator(".scatterlayer .trace .points path").first
    point.hover(force=True)
    page.wait_for_selector(".hoverlayer .hovertext", timeout=5000)
    assert "top-1" in page.locator(".hoverlayer .hovertext").first.text_content()
    assert page.errors == []


def test_statuses_and_hostile_name(page, report):
    page.goto(report.as_uri())
    broken = page.locator("article.suite", has_text="Broken suite")
    assert broken.get_attribute("data-state") == "failed"
    assert "2/3 runs done, 1 failed" in broken.inner_text()
    wip = page.locator("article.suite[data-state=running]")
    assert wip.count() == 1
    assert "1/3 runs done, 1 running" in wip.inner_text()
    # the name is shown as text, not run as a script
    assert wip.locator("h2").inner_text() == "<script>alert(1)</script> WIP"
    assert page.locator("script", has_text="alert(1)").count() == 0
    wip.locator("a.suite-link").click()
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    assert page.locator("h1").inner_text() == "<script>alert(1)</script> WIP"
    page.goto((Path(report).parent / "broken" / "runs" / "tiny3-sequential-s0.html").as_uri())
    assert "failed" in page.locator(".badge").first.inner_text()
    assert "loss is NaN" in page.locator("pre.error").inner_text()
    assert page.errors == []


@pytest.fixture(scope="module")
def rules_report(tmp_path_factory):
    from bench.report import render

    root = tmp_path_factory.mktemp("rules")
    rules = {"criteria": ["max_softmax", "entropy"], "combiners": ["none"]}
    evaluation = {"criteria": rules["criteria"], "combiners": [{"name": "none"}]}
    make_suite(root / "results", "rules", [
        {"run_id": f"tiny3-{m}-s0", "method": m, "skill": s, "rules": rules,
         "evaluation": evaluation} for m, s in (("joint", 1.0), ("boostnet", 1.3))],
        evaluation=evaluation)
    return render(root / "results", root / "reports")


RULE_CURVES = "[...document.querySelectorAll('.js-plotly-plot')].find(p => p.layout.title.text" \
              ".startsWith('Budgeted batch per exit rule'))"


def visible_traces(page) -> list[int]:
    return page.evaluate(f"() => {RULE_CURVES}.data"
                         ".map((t, i) => t.visible === false ? -1 : i).filter(i => i >= 0)")


def test_leaderboard_menu_switches_the_exit_rule(page, rules_report):
    page.goto(rules_report.as_uri())
    page.locator("a.leaderboard-link").click()
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    assert page.url.endswith("/rules/leaderboard.html")
    first = visible_traces(page)
    figure = page.locator(".js-plotly-plot", has_text="Budgeted batch per exit rule")
    assert first and figure.locator(".updatemenu-header-group").count() == 1
    figure.locator(".updatemenu-header-group").click()
    figure.locator(".updatemenu-dropdown-button", has_text="none / entropy").first.click()
    page.wait_for_function(f"() => {RULE_CURVES}.data[0].visible === false")
    second = visible_traces(page)
    assert second and not set(first) & set(second)
    assert page.errors == []


# -- trustworthy exits, the leaderboard's ranking, figure titles (issue 23) ---------------
TRUST_RULES = {"criteria": ["max_softmax", "entropy"], "combiners": ["none", "product"],
               "risk_control": {"losses": ["consistency", "accuracy_gap"],
                                "procedures": ["crc", "ltt"], "epsilons": [0.05, 0.1, 0.2],
                                "delta": 0.1, "grid": 101, "repeats": 10},
               "alphas": [0.1]}
TRUST_EVALUATION = {"criteria": TRUST_RULES["criteria"],
                    "combiners": [{"name": "none"}, {"name": "product"}],
                    "risk_control": TRUST_RULES["risk_control"],
                    "prediction_sets": {"alphas": [0.1]}}


@pytest.fixture(scope="module")
def trust_report(tmp_path_factory):
    from bench.report import render

    root = tmp_path_factory.mktemp("trust")
    make_suite(root / "results", "trust", [
        {"run_id": f"tiny3-{m}-s{seed}", "method": m, "seed": seed, "skill": s,
         "rules": TRUST_RULES, "evaluation": TRUST_EVALUATION}
        for seed in (0, 1) for m, s in (("joint", 1.0), ("boostnet", 1.3),
                                        ("sequential", 0.8))],
        name="Trust suite", evaluation=TRUST_EVALUATION)
    # bench run --only ran two of four runs and stopped: nothing runs the other two
    make_suite(root / "results", "half", [
        {"run_id": f"tiny3-{m}-s0", "method": m, "seed": 0} for m in ("joint", "boostnet")],
        name="Half suite", planned=2)
    return render(root / "results", root / "reports")


@pytest.fixture
def wide_page(browser):
    """A 1400-pixel-wide page (where the figure titles were cut off), recording errors."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.errors = []
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    page.close()


def titles_inside_their_figures(page) -> list[str]:
    """Each figure's title drawn within its figure (the title's top at or below the plot's
    top): the titles that are not, by their text."""
    return page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].flatMap(p => {
        const t = p.querySelector('.gtitle');
        if (!t) return [];
        const top = t.getBoundingClientRect().top, box = p.getBoundingClientRect();
        return top >= box.top - 0.5 && t.getBoundingClientRect().bottom <= box.bottom
            ? [] : [t.textContent];
    })""")


def test_figure_titles_are_not_cut_off_at_1400_pixels(wide_page, trust_report):
    for page_name in ("leaderboard.html", "index.html"):
        wide_page.goto((Path(trust_report).parent / "trust" / page_name).as_uri())
        wide_page.wait_for_selector(".js-plotly-plot .gtitle")
        titles = wide_page.locator(".js-plotly-plot .gtitle").all_text_contents()
        assert any(t.startswith("Budgeted batch per exit rule") for t in titles) or \
            page_name == "index.html"
        assert titles_inside_their_figures(wide_page) == [], page_name
    assert wide_page.errors == []


def test_trustworthy_exit_figures_and_tables_on_the_suite_page(wide_page, trust_report):
    wide_page.goto((Path(trust_report).parent / "trust" / "index.html").as_uri())
    section = wide_page.locator("#trustworthy-exits")
    section.locator(".js-plotly-plot svg.main-svg").first.wait_for()
    plots = section.locator(".js-plotly-plot")
    assert plots.count() == 2
    titles = section.locator(".gtitle").all_text_contents()
    assert titles == ["Risk control: test risk against ε, tiny3",
                      "Risk control: cost against ε, tiny3"]
    # each figure carries one sentence saying what it shows
    captions = section.locator("p.caption").all_text_contents()
    assert len(captions) == 2 and all(c.count(". ") == 0 and c.endswith(".")
                                      for c in captions)
    assert "dotted diagonal" in captions[0]
    # the diagonal risk = ε is drawn, and one line per method
    risk = wide_page.evaluate("() => { const p = document.querySelectorAll("
                              "'#trustworthy-exits .js-plotly-plot')[0];"
                              " return {shapes: p.layout.shapes, data: p.data.filter("
                              "t => t.visible !== false).map(t => t.name)}; }")
    assert risk["shapes"][0]["x0"] == 0 and risk["shapes"][0]["x1"] == risk["shapes"][0]["y1"] \
        == 0.2
    assert risk["data"] == ["joint", "boostnet", "sequential"]
    assert section.locator(".js-plotly-plot").first.locator(".trace.scatter").count() == 3
    # the menu picks another loss and procedure
    section.locator(".updatemenu-header-group").first.click()
    section.locator(".updatemenu-dropdown-button", has_text="accuracy_gap, ltt").first.click()
    wide_page.wait_for_function("() => document.querySelector('#trustworthy-exits "
                                ".js-plotly-plot').data[0].visible === false")
    for title in ("Validity diagnostic", "Anytime quality", "Failure prediction and "
                  "calibration per exit", "Prediction sets per exit"):
        assert section.locator("h3", has_text=title).count() == 1, title
    details = section.locator("details.more")
    assert details.count() == 1 and details.get_attribute("open") is None
    assert wide_page.errors == []


def test_the_leaderboard_leads_with_the_ranking_and_the_ltt_column(wide_page, trust_report):
    wide_page.goto((Path(trust_report).parent / "trust" / "leaderboard.html").as_uri())
    wide_page.wait_for_selector(".js-plotly-plot svg.main-svg")
    backbone = wide_page.locator("section.backbone").first
    first = backbone.locator("section.table").first
    assert first.locator("h3").inner_text().startswith("Ranking: test top-1 % at each "
                                                       "average budget, default exit rule")
    header = first.locator("thead th").all_inner_texts()
    assert header[:2] == ["rank", "method"]
    assert header[-1] == "MMACs at accuracy gap ≤ 5% (LTT, δ 0.1)"
    rows = [r.locator("td").all_inner_texts() for r in first.locator("tbody tr").all()]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    assert [r[1] for r in rows] == ["boostnet", "joint", "sequential"]  # by skill
    assert all(r[-1] != "–" and float(r[-1].split(" ± ")[0]) > 0 for r in rows)
    # then the heatmap of methods x rules; the full per-rule tables collapsed below
    assert wide_page.evaluate("() => document.querySelector('.js-plotly-plot')"
                              ".data[0].type") == "heatmap"
    details = backbone.locator("details.more")
    assert details.get_attribute("open") is None
    assert not details.locator("section.table").first.is_visible()
    details.locator("summary").click()
    assert details.locator("section.table").first.is_visible()
    assert wide_page.errors == []


def test_a_half_run_suite_says_none_running(wide_page, trust_report):
    wide_page.goto(trust_report.as_uri())
    half = wide_page.locator("article.suite", has_text="Half suite")
    assert half.get_attribute("data-state") == "partial"
    assert "2/4 runs done, none running" in half.inner_text()
    assert half.locator(".badge").inner_text() == "partial"
    assert wide_page.errors == []
