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


def visible_traces(page) -> list[int]:
    return page.evaluate("() => document.querySelector('.js-plotly-plot').data"
                         ".map((t, i) => t.visible === false ? -1 : i).filter(i => i >= 0)")


def test_leaderboard_menu_switches_the_exit_rule(page, rules_report):
    page.goto(rules_report.as_uri())
    page.locator("a.leaderboard-link").click()
    page.wait_for_selector(".js-plotly-plot svg.main-svg")
    assert page.url.endswith("/rules/leaderboard.html")
    first = visible_traces(page)
    assert first and page.locator(".updatemenu-header-group").count() >= 1
    page.locator(".updatemenu-header-group").first.click()
    page.locator(".updatemenu-dropdown-button", has_text="none / entropy").first.click()
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').data[0]"
                           ".visible === false")
    second = visible_traces(page)
    assert second and not set(first) & set(second)
    assert page.errors == []
