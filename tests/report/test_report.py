"""bench.report.render on small stores written as docs/results-format.md says (no browser)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench import store
from bench.fileio import LinkRefused
from bench.report import render
from bench.report.plots import to_script_json
from report_fixtures import make_run, make_suite, standard_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("r")
    standard_store(root / "results")
    index = render(root / "results", root / "reports")
    return index


def test_index_lists_every_suite_with_status(reports):
    html = reports.read_text()
    assert reports.name == "index.html"
    assert "Demo suite" in html and "8/8 runs done" in html
    assert "2/3 runs done, 1 failed" in html
    assert "1/3 runs done, 1 running" in html
    # the hostile name is escaped text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt; WIP" in html
    assert "<script>alert" not in html
    assert "<script>alert" not in (reports.parent / "wip" / "index.html").read_text()


def test_offline_and_csv_links(reports):
    root = reports.parent
    assert (root / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    for page in root.rglob("*.html"):
        html = page.read_text()
        assert not re.search(r"(src|href)=\"(https?:)?//", html), page  # nothing remote
        for href in re.findall(r'href="([^"]+)"', html):
            assert (page.parent / href).resolve().is_file(), (page, href)


def test_suite_page_contents(reports):
    html = (reports.parent / "demo" / "index.html").read_text()
    for text in ("computed from the saved logits of all exits", "fvcore multiply-adds",
                 "paired t-test over seeds", "Ablations: each variant minus its method",
                 "boostnet-no-rescale", "effective training samples", "Resolved suite",
                 "Plotly.newPlot"):
        assert text in html, text
    assert "paper:" not in html  # synthetic data: not the paper's protocol
    ablation = (reports.parent / "demo" / "ablation-tiny3.csv").read_text().splitlines()
    assert ablation[0].startswith("backbone,method,reference,kind,point")
    assert len(ablation) == 1 + 2  # the variant at both budgets
    run = (reports.parent / "demo" / "runs" / "tiny3-boostnet-s0.html").read_text()
    assert "Share of test images leaving at each exit" in run and "History per epoch" in run


def test_suite_page_shows_the_environment_the_runs_recorded(reports):
    """The environment table holds the values of the runs' environment.json (one row per
    distinct torch, device, code version and commit, with the run count), not just its
    header."""
    envs = [json.loads(p.read_text()) for p in
            sorted((reports.parent.parent / "results" / "demo").glob("*/environment.json"))]
    assert len(envs) == 8
    html = (reports.parent / "demo" / "index.html").read_text()
    table = re.search(r'<table id="environment">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, "the suite page has no environment table"
    e = envs[0]
    dates = sorted(x["date"] for x in envs)
    assert re.findall(r"<td>(.*?)</td>", table.group(1)) == [
        e["torch"], e["device"], e["code_version"], e["git_commit"] or "–", e["python"],
        dates[0], dates[-1], "8"]


def test_paper_numbers_beside_ours(tmp_path):
    mm = tuple(10.0 * (n + 1) for n in range(10))
    runs = [{"run_id": f"{m}", "method": m, "backbone": "msdnet10_cifar", "dataset": "cifar100",
             "mmacs": mm, "params": tuple(range(10)), "budgets": (20.0, 30.0), "m": 50,
             "classes": 100} for m in ("joint", "boostnet")]
    make_suite(tmp_path / "results", "paper", runs)
    index = render(tmp_path / "results", tmp_path / "reports")
    html = (index.parent / "paper" / "index.html").read_text()
    assert "paper: BoostNet" in html and "paper: MSDNet" in html
    assert "The paper&#39;s numbers beside ours" in html
    csv = (index.parent / "paper" / "paper-msdnet10_cifar.csv").read_text()
    assert "BoostNet,boostnet,exit 1,15.14,65.32" in csv
    assert "MSDNet,joint,20 MMACs budget,20.0,70.02" in csv


def test_partial_and_empty_stores(tmp_path):
    results = tmp_path / "results"
    assert "No results yet" in render(results, tmp_path / "reports").read_text()
    make_suite(results, "pending", [], planned=2)  # suite.json only
    store.Suite(results / "pending").write_suite({"name": "pending"}, ["half", "started"])
    (results / "pending" / "half").mkdir()
    (results / "pending" / "half" / "config.json").write_text("{not json")
    make_run(results / "pending", "started", state="running")
    index = render(results, tmp_path / "reports")
    assert "0/2 runs done, 1 running" in index.read_text()
    assert (index.parent / "pending" / "runs" / "half.html").exists()


def test_select_suites(tmp_path):
    results = tmp_path / "results"
    make_suite(results, "a", [{"run_id": "r", "method": "joint", "m": 20}])
    make_suite(results, "b", [{"run_id": "r", "method": "joint", "m": 20}], name="Bee")
    index = render(results, tmp_path / "reports", ["Bee"])  # a display name, or a folder
    assert (index.parent / "b" / "index.html").exists()
    assert not (index.parent / "a" / "index.html").exists()
    html = index.read_text()  # the index lists every suite, linking those with a page
    assert "Bee" in html and "<code>a</code>" in html
    assert 'href="b/index.html"' in html and 'href="a/index.html"' not in html
    with pytest.raises(ValueError, match="found: a, b"):
        render(results, tmp_path / "reports", ["nope"])


def test_figure_json_cannot_close_the_script_tag():
    text = to_script_json({"data": [{"name": "</script><script>alert(1)</script>",
                                     "y": [float("nan"), 1.0]}]})
    assert "<" not in text and ">" not in text
    assert json.loads(text)["data"][0]["y"] == [None, 1.0]


def test_stale_runs_are_marked(tmp_path):
    make_suite(tmp_path / "results", "s", [
        {"run_id": "fresh", "method": "joint", "m": 20},
        {"run_id": "old", "method": "boostnet", "m": 20, "stale": True}])
    index = render(tmp_path / "results", tmp_path / "reports")
    assert "2/2 runs done, 1 stale" in index.read_text()
    page = (index.parent / "s" / "index.html").read_text()
    assert 'id="stale-runs"' in page and "made by other code than the current" in page
    runs_csv = (index.parent / "s" / "runs.csv").read_text().splitlines()
    assert runs_csv[0].startswith("run_id,backbone,method,seed,state,stale,code")
    assert ",stale,0000000000," in runs_csv[2] and ",stale," not in runs_csv[1]
    assert "stale: made by other code" in (index.parent / "s" / "runs" / "old.html").read_text()
    assert "stale: made by" not in (index.parent / "s" / "runs" / "fresh.html").read_text()


def test_ablations_of_any_method_against_its_reference_variant(tmp_path):
    runs = [{"run_id": f"{label}-s{seed}", "method": "sequential", "label": label,
             "options": options, "seed": seed, "m": 60, "skill": 1.0 + 0.1 * seed}
            for seed in (0, 1) for label, options in (
                ("sequential", {}), ("seq-free", {"freeze_previous": False}),
                ("seq-t05", {"temperature": 0.5}))]
    make_suite(tmp_path / "results", "seq", runs)
    # a method with variants but no reference variant gets no ablation table
    make_suite(tmp_path / "results", "noref", [
        {"run_id": "a", "method": "boostnet", "label": "b-a", "options": {"joint": False},
         "m": 40},
        {"run_id": "b", "method": "boostnet", "label": "b-b", "options": {"temperature": 1.0},
         "m": 40}])
    index = render(tmp_path / "results", tmp_path / "reports")
    ablation = (index.parent / "seq" / "ablation-tiny3.csv").read_text().splitlines()
    assert len(ablation) == 1 + 2 * 2  # two variants at two budgets
    assert all(line.split(",")[2] == "sequential" for line in ablation[1:])  # the reference
    page = (index.parent / "seq" / "index.html").read_text()
    assert "seq-free: {&#34;freeze_previous&#34;: false}" in page
    assert not (index.parent / "noref" / "ablation-tiny3.csv").exists()


def test_other_settings_are_listed_apart_and_left_out_of_the_tables(tmp_path):
    results = tmp_path / "results"
    folder = make_suite(results, "s", [
        {"run_id": "joint-e2", "method": "joint", "skill": 2.0, "epochs": 2},
        {"run_id": "boost-e2", "method": "boostnet", "skill": 2.5, "epochs": 2}], name="s")
    make_run(folder, "joint-e1", method="joint", skill=0.1, epochs=1,
             config={"training": {"epochs": 1, "batch_size": 64}})
    index = render(results, tmp_path / "reports")
    assert "2/2 runs done; other settings: 1 run" in index.read_text()
    page = index.parent / "s"
    budget = (page / "budget-tiny3.csv").read_text()
    assert set(line.split(",")[7] for line in budget.splitlines()[1:]) == {"1"}  # n = 1
    significance = (page / "significance-tiny3.csv").read_text()
    assert ",1 seeds" not in significance and "bootstrap" in significance
    others = (page / "other-runs.csv").read_text().splitlines()
    assert len(others) == 2 and others[1].startswith("joint-e1,tiny3,joint,0,done,"
                                                      "other settings,")
    assert "training.epochs: 1 (current 2)" in others[1]
    html = (page / "index.html").read_text()
    assert "Runs not in the tables (other settings: 1 run)" in html
    assert (page / "runs" / "joint-e1.html").exists()  # linked from that list


def test_report_files_replace_links_and_never_write_through_them(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    make_suite(results, "s", [{"run_id": "r", "method": "joint", "m": 20}], name="s")
    render(results, reports)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("index.html", "report.css"):
        (outside / name).write_text("precious")
    links = {reports / "s" / "index.html": outside / "index.html",
             reports / "assets" / "report.css": outside / "report.css",
             reports / "s" / "runs.csv": outside / "new.csv"}  # dangling
    for link, target in links.items():
        link.unlink()
        link.symlink_to(target)
    render(results, reports)
    assert sorted(p.name for p in outside.iterdir()) == ["index.html", "report.css"]
    assert all(p.read_text() == "precious" for p in outside.iterdir())
    for link in links:
        assert not link.is_symlink() and link.stat().st_size > 0, link


def test_a_report_folder_that_is_a_link_is_refused(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    make_suite(results, "s", [{"run_id": "r", "method": "joint", "m": 20}], name="s")
    (tmp_path / "outside").mkdir()
    reports.mkdir()
    (reports / "s").symlink_to(tmp_path / "outside")
    with pytest.raises(LinkRefused, match=f"{reports / 's'} is a symbolic link"):
        render(results, reports)
    assert list((tmp_path / "outside").iterdir()) == []


def test_a_write_that_fails_during_the_report_leaves_every_page_whole(tmp_path):
    """A real failed write (a file-size limit, like a full disk): the page being written
    keeps its previous version, no partial or temporary file is left."""
    standard_store(tmp_path / "results")
    reports = render(tmp_path / "results", tmp_path / "reports").parent
    before = {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()}
    big = reports / "demo" / "index.html"
    assert big.stat().st_size > 30_000 > max(
        p.stat().st_size for p in reports.rglob("*.html") if p != big)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--results", "results", "--reports",
         "reports"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000)))
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"while writing reports/demo/index.html\n"), done.stderr
    after = {p: p.read_bytes() for p in reports.rglob("*") if p.is_file()}
    assert after == before


def test_a_render_deletes_what_a_killed_render_left(tmp_path):
    results, reports = tmp_path / "results", tmp_path / "reports"
    make_suite(results, "s", [{"run_id": "r", "method": "joint", "m": 20}], name="s")
    render(results, reports)
    left = [reports / ".index.html.k1ll3d.tmp", reports / "s" / ".runs.csv.x8.tmp",
            reports / "s" / "runs" / ".r.html.y9.tmp", reports / "assets" / ".report.css.z.tmp"]
    for path in left:
        path.write_text("half")
    kept = reports / "s" / "notes.tmp"  # not a name a write of the report leaves
    kept.write_text("mine")
    render(results, reports)
    assert not any(p.exists() for p in left) and kept.read_text() == "mine"
