"""docs/suite-schema.md is what the schema's models say (bench.config.reference)."""
from pathlib import Path

from bench.config import reference
from bench.config.schema import SuiteConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "suite-schema.md"


def test_the_page_is_in_sync_with_the_models():
    assert DOC.read_text() == reference.page(), (
        "docs/suite-schema.md is out of date: python -m bench.config.reference > "
        "docs/suite-schema.md")


def test_every_key_has_a_row_with_its_default():
    page = reference.page()
    for key in SuiteConfig.keys():
        assert f"| `{key}` |" in page
    assert "| `training.epochs` | integer >= 1 | `300` | epochs per run |" in page
    assert "| `budgets.fractions` | list of number > 0 and <= 1, or null | `null` |" in page
    assert "| `training.schedule.milestones` (step) | list of number > 0 and < 1 |" in page
    assert "| `tune.pruner.percentile` (percentile) |" in page
    assert "| `methods[].name` | a registered method | required |" in page
    assert "`methods[].reference`" not in page  # derived keys are not for suites
