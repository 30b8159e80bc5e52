"""The README and docs/ speak to users: Colab first, no word about how the project is made, every figure with
the command that measured it, links that resolve, and a Layout section that matches the package."""

import re
from pathlib import Path

import pytest

from cifarlib.project import colab_url

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
NOTEBOOKS = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))

# Words about how the project is developed, and paths that exist only beside this repository.
PROCESS_WORDS = re.compile(
    r"\bissues?\b|\bissue #?\d+|#\d{1,4}\b|\blent\b|\btasks?\b|\bsessions?\b|\.\./|/work/|\bshared/data\b",
    re.IGNORECASE,
)
# A measured figure: a decimal number with a unit, or a ratio such as 1.74x.
FIGURE = re.compile(r"\b\d+\.\d+ ?(%|x\b|s/epoch|s per|images/s|GiB|GFLOP|TFLOP)")
COMMAND = re.compile(r"`(make [a-z-]+|python -m cifarlib [a-z-]+|[A-Z_]+=\S+ (make|python))[^`]*`")
HEADING = re.compile(r"^#{1,3} ", re.MULTILINE)


def sections(text: str) -> list[str]:
    """The text cut at its headings: each piece is one heading and what follows it."""
    starts = [match.start() for match in HEADING.finditer(text)] + [len(text)]
    return [text[: starts[0]]] + [text[a:b] for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_no_process_words(path):
    text = path.read_text()
    found = [
        f"line {text.count(chr(10), 0, match.start()) + 1}: {match.group(0)!r}"
        for match in PROCESS_WORDS.finditer(text)
    ]
    assert not found, f"{path.name} speaks of how the project is made: {found}"


def test_readme_starts_with_the_colab_quick_start():
    text = README.read_text()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings[0] == "Quick start in Colab"
    quick_start = sections(text)[2]
    # The title's section is the introduction: five lines at most.
    introduction = [line for line in sections(text)[1].splitlines()[1:] if line.strip()]
    assert 0 < len(introduction) <= 5
    for name in NOTEBOOKS:
        # The repository's address is written once, in pyproject.toml: the badges must follow it.
        badge = colab_url(f"{name}.ipynb")
        assert badge in quick_start, f"the quick start lacks {name}'s Colab badge"
    positions = [quick_start.index(f"`{name}`") for name in NOTEBOOKS]
    assert positions == sorted(positions), "notebooks listed out of order"
    for topic in ("preset", "Resume", "per epoch"):
        assert topic in quick_start
    assert "TPUStrategy" not in text


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_figure_in_docs_has_its_command_in_its_section(path):
    for section in sections(path.read_text()):
        figures = FIGURE.findall(section)
        if figures:
            heading = section.strip().splitlines()[0]
            assert COMMAND.search(section), (
                f"{path.name}, {heading!r}: figures without the command behind them"
            )


def test_readme_figures_link_to_the_docs_that_hold_their_commands():
    results = next(s for s in sections(README.read_text()) if s.startswith("## Results"))
    rows = [line for line in results.splitlines() if line.startswith("|") and FIGURE.search(line)]
    assert rows
    for row in rows:
        assert re.search(r"\]\(docs/[a-z-]+\.md\)", row), row


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


def test_layout_lists_every_module():
    layout = next(s for s in sections(README.read_text()) if s.startswith("## Layout"))
    listed = set(re.findall(r"^  ([a-z_]+\.py) ", layout, re.MULTILINE))
    modules = {path.name for path in (ROOT / "cifarlib").glob("*.py")}
    assert listed == modules, f"missing: {sorted(modules - listed)}, gone: {sorted(listed - modules)}"
