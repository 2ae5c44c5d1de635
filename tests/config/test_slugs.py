"""Results folder names of suites (bench.config.loading.slugify): the slug an ASCII name
always had, a unique one for names with other characters."""
from __future__ import annotations

import pytest

from bench.config.loading import slugify


@pytest.mark.parametrize("name, slug", [
    ("quickstart", "quickstart"), ("My Suite!", "My-Suite"), ("cifar100 / msdnet", "cifar100-msdnet"),
    ("a.b_c-d", "a.b_c-d"), ("!!!", "suite"), ("..x..", "x")])
def test_ascii_names_keep_the_slug_they_always_had(name, slug):
    assert slugify(name) == slug


def test_names_with_other_characters_get_a_folder_of_their_own():
    names = ["✓✓✓", "实验二", "实验三", "Café", "Cafe\u0301", "✓✓"]
    slugs = [slugify(n) for n in names]
    assert len(set(slugs)) == len(names)  # they all shared "suite" or "Caf" before
    assert slugs[0].startswith("suite-") and slugs[3].startswith("Caf-")
    assert all(s.isascii() and len(s) == len(s.split("-")[0]) + 9 for s in slugs)
    assert slugify("✓✓✓") == slugs[0]  # the same name: the same folder, every time
