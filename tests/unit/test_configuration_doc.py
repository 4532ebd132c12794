"""The documentation stays in step: docs/configuration.md is what tools/configuration_doc.py renders from the
settings classes, and every relative link in README.md and docs/*.md points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools import configuration_doc

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and ![alt](target), not inside code; the target up to whitespace or the closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def test_configuration_page_is_the_generators_output():
    expected = configuration_doc.render()
    assert configuration_doc.PAGE.read_text() == expected, (
        "docs/configuration.md is out of date: run `python -m tools.configuration_doc > docs/configuration.md`"
    )


def test_every_settings_field_has_a_description():
    for cls in configuration_doc.settings_classes():
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description for docs/configuration.md"


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    targets = [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]
    return [target.split("#", 1)[0] for target in targets if not target.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(page):
    missing = [target for target in relative_links(page) if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO)} links to missing files: {missing}"


def test_the_link_check_sees_links():
    assert "docs/configuration.md" in relative_links(REPO / "README.md")
