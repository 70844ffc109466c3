"""Every relative link in README.md and docs/*.md leads to a file of this repository (and a
``#section`` to a heading there), so the documentation works in a fresh clone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")


def links(document: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", document.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def anchors(document: Path) -> set[str]:
    """GitHub's ids of the document's headings: lower case, punctuation dropped, spaces → -."""
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_docs_folder_has_its_three_guides() -> None:
    assert {path.name for path in DOCUMENTS} >= {"README.md", "api.md", "rules.md", "operations.md"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_relative_link_resolves_inside_the_repository(document: Path) -> None:
    found = links(document)
    assert found or document.name != "README.md", "README.md should link to docs/"
    for target in found:
        path_part, _, section = target.partition("#")
        linked = (document.parent / path_part).resolve() if path_part else document
        assert linked.is_relative_to(ROOT), f"{document.name}: {target} leaves the repository"
        assert linked.exists(), f"{document.name}: {target} does not exist"
        if section and linked.suffix == ".md":
            assert section in anchors(linked), f"{document.name}: no heading for {target}"


def test_the_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("[spec](../shared/PRODUCT.md), [ok](https://example.com), `[x](nowhere)`\n")
    assert links(page) == ["../shared/PRODUCT.md"]
    assert not (tmp_path / "../shared/PRODUCT.md").resolve().is_relative_to(tmp_path)
