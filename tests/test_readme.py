"""The README as a newcomer reads it: its Python example runs, its links resolve, and it stays
a front page that opens with the two commands CI and the contract check rely on."""

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def test_readme_opens_with_the_main_job_and_the_tests():
    blocks = code_blocks(README.read_text(), "bash")
    assert blocks[:2] == [
        "bash scripts/setup.sh && .venv/bin/scar reproduce --quick\n",
        "bash scripts/setup.sh && .venv/bin/python -m pytest -q\n",
    ]


def test_readme_is_a_front_page():
    assert len(README.read_text().splitlines()) <= 150


PYTHON_BLOCKS = code_blocks(README.read_text(), "python")


def test_readme_has_a_python_example():
    assert PYTHON_BLOCKS


@pytest.mark.parametrize("n", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(n, tmp_path):
    """Each ```python block of the README, as a script of its own in an empty folder."""
    script = tmp_path / f"readme_{n}.py"
    script.write_text(PYTHON_BLOCKS[n])
    run = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr


def without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """The anchors a Markdown renderer gives the page's headings (GitHub's rule: lower case,
    punctuation dropped, spaces to hyphens)."""
    headings = re.findall(r"^#+ +(.+?) *$", without_code(page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    """Every relative link of the README and of docs/*.md names a file or folder of the repo,
    and its anchor, if any, a heading of the Markdown page it links to."""
    targets = re.findall(r"\]\(([^)\s]+)\)", without_code(page.read_text()))
    broken = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path)).resolve() if path else page
        if not linked.exists() or ROOT not in [linked, *linked.parents]:
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: links to nothing: {broken}"
