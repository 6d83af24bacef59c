"""The README and docs/*.md: every relative link reaches a file (and its heading), every quoted
command names a script, module or make target that exists."""

import re
from pathlib import Path

import pytest

from conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`\n]+)`", re.DOTALL)
SCRIPT = re.compile(r"\bpython3? +((?:[\w./-]+/)?[\w-]+\.py)\b")
MODULE = re.compile(r"\bpython3? +-m +([\w.]+)")
MAKE = re.compile(r"\bmake +([\w-]+)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of every heading of a Markdown page, outside code blocks."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return {anchor(m[1]) for m in re.finditer(r"^#{1,6} +(.+)$", text, re.MULTILINE)}


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or heading within it, does not exist."""
    broken = []
    text = page.read_text()
    for target in LINK.findall(re.sub(r"```.*?```", "", text, flags=re.DOTALL)):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{fragment} in {file.name}")
    return broken


def make_targets(makefile: Path) -> set[str]:
    """The targets a Makefile defines."""
    return set(re.findall(r"^([\w-]+):", makefile.read_text(), re.MULTILINE))


def unknown_commands(text: str, root: Path) -> list[str]:
    """The quoted ``python X.py``, ``python -m M`` and ``make T`` commands whose X, M or T do not
    exist under ``root``."""
    targets = make_targets(root / "Makefile")
    unknown = []
    for block, inline in CODE.findall(text):
        code = block or inline
        for script in SCRIPT.findall(code):
            if not script.startswith("/") and not (root / script).is_file():
                unknown.append(f"python {script}")
        for module in MODULE.findall(code):
            if module.split(".")[0] in {"pip", "venv", "pytest", "torch", "timm"}:
                continue
            path = root / module.replace(".", "/")
            if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
                unknown.append(f"python -m {module}")
        for target in MAKE.findall(code):
            if target not in targets:
                unknown.append(f"make {target}")
    return unknown


def test_a_planted_broken_link_is_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Some section: here\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#some-section-here) [web](https://example.org/x)\n"
        "[missing](docs/b.md) [no heading](docs/a.md#other)\n```\n[in code](nowhere.md)\n```\n"
    )
    assert broken_links(page) == [
        "docs/b.md: no file docs/b.md",
        "docs/a.md#other: no heading #other in a.md",
    ]


def test_a_planted_unknown_command_is_found(tmp_path):
    (tmp_path / "Makefile").write_text("demo: install\n\tpython x.py\ninstall:\n")
    (tmp_path / "x.py").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tool.py").write_text("")
    text = (
        "`python x.py -c a` `make demo` `python -m pkg.tool`\n"
        "```bash\npython y.py\nmake dmeo\npython -m pkg.missing\n```\n"
    )
    assert unknown_commands(text, tmp_path) == ["python y.py", "python -m pkg.missing", "make dmeo"]


def test_anchors_follow_github():
    assert anchor("Step 2 and the baseline: knowledge distillation (`train_kd.py`)") == (
        "step-2-and-the-baseline-knowledge-distillation-train_kdpy"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_reaches_a_file_and_heading(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_command_exists(page):
    assert unknown_commands(page.read_text(), REPO_ROOT) == []
