import pytest

from bench import cli
from executor_plugin import metrics, write_suite


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """Metrics of the executor tests' suite from an uninterrupted local run."""
    tmp = tmp_path_factory.mktemp("reference")
    suite = write_suite(tmp)
    assert cli.main(["run", str(suite), "--results", str(tmp / "results"), "--no-report",
                     "--quiet"]) == 0
    return metrics(tmp / "results")
