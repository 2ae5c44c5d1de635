"""Costs per (backbone, method): a method's modules counted by fvcore, its analytic MACs
added, budgets shared per backbone and checked against every method's range."""
import json
import textwrap
from types import SimpleNamespace

import pytest

from bench.config import Checker, SuiteError, costs, load_suite

SUITE = """\
name: costs
dataset: {name: synthetic, options: {num_classes: 10}}
backbones: [msdnet_tiny]
methods: [joint, kd, l2w, imta, ztw, {name: ztw, label: ztw-ln, options: {layer_norm: true}}]
training: {epochs: 2}
budgets: {fractions: [0.6, 1.0]}
"""


pytestmark = pytest.mark.usefixtures("fresh_cache")


def load(tmp_path, text=SUITE):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return load_suite(path)


def by_method(suite):
    return {r.method_label: r for r in suite.runs}


def test_each_method_has_its_own_costs_and_all_share_the_budgets(tmp_path):
    runs = by_method(load(tmp_path))
    joint = runs["joint"].exit_mmacs
    assert runs["kd"].exit_mmacs == runs["l2w"].exit_mmacs == joint  # nothing at inference
    C, c = 10, 32  # classes; msdnet_tiny's head width
    imta = [(i - j) * 1e6 for i, j in zip(runs["imta"].exit_mmacs, joint)]
    assert imta == pytest.approx([0, 2 * C * c + 2 * c, 2 * (2 * C * c + 2 * c)], abs=1e-6)
    # cascade C^2 per exit n >= 2 (fvcore), ensembles n C per exit (analytic), cumulative
    ztw = [(z - j) * 1e6 for z, j in zip(runs["ztw"].exit_mmacs, joint)]
    assert ztw == pytest.approx([C, C * C + 3 * C, 2 * C * C + 6 * C], abs=1e-6)
    ztw_ln = [(z - j) * 1e6 for z, j in zip(runs["ztw-ln"].exit_mmacs, joint)]
    assert ztw_ln == pytest.approx([C, C * C + 5 * C + 3 * C, 2 * (C * C + 5 * C) + 6 * C],
                                   abs=1e-6)
    for name in ("imta", "ztw"):  # every exit from the second costs strictly more
        assert all(m > j for m, j in zip(runs[name].exit_mmacs[1:], joint[1:]))
    budgets = {r.budgets_mmacs for r in runs.values()}
    assert budgets == {(round(0.6 * joint[-1], 6), round(joint[-1], 6))}


def test_a_budget_below_a_methods_first_exit_is_named(tmp_path):
    joint = by_method(load(tmp_path))["joint"].exit_mmacs
    text = SUITE.replace("budgets: {fractions: [0.6, 1.0]}",
                         f"budgets: {{mmacs: [{joint[0]!r}]}}")
    with pytest.raises(SuiteError, match=r"budgets.mmacs\[0\].*outside the range of method "
                                         r"'ztw' on backbone 'msdnet_tiny'"):
        load(tmp_path, text)


def test_a_cost_cache_of_valid_json_but_another_shape_is_repaired(tmp_path):
    cache = tmp_path / "cache" / "boostnet-bench" / "costs.json"
    expected = by_method(load(tmp_path))["joint"].exit_mmacs  # writes the cache
    wrong_entries = json.dumps({key: "oops" for key in json.loads(cache.read_text())})
    for bad in ("[]", "null", "7", wrong_entries):
        costs._BACKBONES.clear(), costs._METHOD_COSTS.clear()
        cache.write_text(bad)
        assert by_method(load(tmp_path))["joint"].exit_mmacs == expected, bad
        repaired = json.loads(cache.read_text())
        assert isinstance(repaired, dict) and "oops" not in repaired.values(), bad


def budgets(**given):
    return SimpleNamespace(fractions=given.get("fractions"), mmacs=given.get("mmacs"))


def test_a_budget_outside_the_range_is_shown_with_the_digits_that_say_why():
    info = costs.BackboneInfo(2, (3, 32, 32), (2.8, 5.2899996), "Net", False)
    c = Checker("s.yaml")
    # Fraction 1.0 is the last exit's cost, not its 6-decimal rounding (5.29, outside).
    assert costs.budgets_for(c, budgets(fractions=(0.6, 1.0)), info, "net") == \
        [3.17400, 5.2899996]
    with pytest.raises(SuiteError) as err:
        costs.budgets_for(c, budgets(mmacs=(5.2900001,)), info, "net")
    assert str(err.value) == ("s.yaml: budgets.mmacs[0]: 5.2900001 MMACs is outside the range "
                              "of backbone 'net': 2.8000000..5.2899996 MMACs (exit 1 .. exit 2)")
    with pytest.raises(SuiteError, match=r"5\.30 MMACs is outside .*: 2\.80\.\.5\.29 MMACs"):
        costs.budgets_for(c, budgets(mmacs=(5.3,)), info, "net")
