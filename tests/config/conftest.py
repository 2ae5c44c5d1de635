"""What the config tests share."""
import pytest

from bench.config import costs


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """The test starts with empty cost caches and leaves none behind, in this process or on
    disk (costs a test writes must never reach the user's cache). A test module asks for
    it with ``pytestmark = pytest.mark.usefixtures("fresh_cache")``."""
    monkeypatch.setattr(costs, "_BACKBONES", {})
    monkeypatch.setattr(costs, "_METHOD_COSTS", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
