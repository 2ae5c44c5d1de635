"""plugins: files or modules a suite imports before validation, registering methods and
backbones with the registries' own decorators."""
from __future__ import annotations

import textwrap

import pytest

import methods
from bench import backbones, fingerprint
from bench.config import SuiteError, load_suite

PLUGIN = '''
import methods
from methods import Method, NUMBER, Option, Range
from bench import backbones


@methods.register("test_plugin_mean")
class RunningMean(Method):
    """F_n = scale * mean(f_1..f_n); only combine is overridden."""

    OPTIONS = Method.OPTIONS + (Option("scale", NUMBER, 1.0, "multiplies the running mean"),)
    SEARCH_SPACE = {"scale": Range(0.5, 2.0)}

    def combine(self, outs):
        return [self.scale * sum(outs[: n + 1]) / (n + 1) for n in range(len(outs))]


@backbones.register("test_plugin_chain")
def chain(**overrides):
    return backbones.create("chain_tiny", **overrides)
'''

SUITE = """\
name: plugged
plugins: [{plugin}]
dataset: {{name: synthetic, heldout: 50, options: {{train_size: 200}}}}
backbones: [test_plugin_chain]
methods: [joint, test_plugin_mean, {{name: test_plugin_mean, label: mean-2, options: {{scale: 2}}}}]
training: {{epochs: 1}}
"""


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """One plugin file for the whole module: it registers its names once per process."""
    d = tmp_path_factory.mktemp("plugins")
    (d / "toy.py").write_text(PLUGIN)
    return d


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_plugin_file_relative_to_the_suite_registers_a_method_and_a_backbone(plugin_dir):
    suite = write(plugin_dir / "suites" / "plugged.yaml",
                  SUITE.format(plugin="../toy.py"))
    s = load_suite(suite)
    assert "test_plugin_mean" in methods.names() and "test_plugin_chain" in backbones.names()
    assert s.config.plugins == (str(plugin_dir / "toy.py"),)
    assert [r.method_label for r in s.runs] == ["joint", "test_plugin_mean", "mean-2"]
    assert [m.reference for m in s.config.methods] == [True, True, False]
    assert s.runs[2].method_options == {"loss_weights": None, "scale": 2.0}
    # loading the suite again in the same process imports nothing twice
    assert [r.run_id for r in load_suite(suite).runs] == [r.run_id for r in s.runs]


def test_plugin_files_are_part_of_the_code_fingerprint(plugin_dir):
    plugged = fingerprint.fingerprint([str(plugin_dir / "toy.py")], git=False)
    assert plugged["sha256"] != fingerprint.fingerprint(git=False)["sha256"]


def test_a_plugin_module_on_the_path(plugin_dir, tmp_path, monkeypatch):
    pkg = tmp_path / "mods" / "toy_plugins_pkg"
    write(pkg / "__init__.py", "from toy_plugins_pkg import extra  # noqa: F401\n")
    write(pkg / "extra.py", 'import methods\n\n\n@methods.register("test_plugin_module")\n'
                            'class Extra(methods.Method):\n    pass\n')
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    suite = write(tmp_path / "s.yaml", SUITE.format(plugin=f"[{plugin_dir / 'toy.py'}, "
                                                    "toy_plugins_pkg]")
                  .replace("plugins: [[", "plugins: [").replace("]]", "]")
                  .replace("[joint, ", "[test_plugin_module, "))
    s = load_suite(suite)
    assert s.config.plugins[1] == "toy_plugins_pkg"
    assert s.runs[0].method_name == "test_plugin_module"
    assert {p.name for p in fingerprint.plugin_files(["toy_plugins_pkg"])} == \
        {"__init__.py", "extra.py"}


@pytest.mark.parametrize("plugins,detail", [
    ("[missing.py]", "no such plugin file"),
    ("[broken.py]", "cannot import plugin"),
    ("[no_such.module]", "cannot import plugin 'no_such.module': ModuleNotFoundError"),
    ("notalist.py", "expected a non-empty list"),
])
def test_bad_plugins_name_the_key(tmp_path, plugins, detail):
    write(tmp_path / "broken.py", "raise RuntimeError('plugin bug')\n")
    suite = write(tmp_path / "s.yaml", SUITE.format(plugin="x").replace("[x]", plugins))
    with pytest.raises(SuiteError) as err:
        load_suite(suite)
    assert err.value.path.startswith("plugins") and detail in err.value.message
