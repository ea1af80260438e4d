"""The docs cannot rot: every ```python block of docs/*.md runs and prints what the page shows.

Page convention (see docs/README.md):

* the ```python blocks of a page run in order, in one namespace (a later block
  may use what an earlier one defined), from the repository root;
* a ```text block that directly follows a ```python block (nothing but blank
  lines in between) is that block's expected output, compared line by line
  (trailing spaces ignored); a block that prints must be followed by one;
* formulas and shell commands live in plain ``` (or ```bash) fences, which are
  not run;
* every topic page ends with a runnable snippet (its last fence is ```python,
  or the ```text output of one, and nothing follows it).
"""
import contextlib
import io
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def parse_page(text):
    """[(language, code, start, end)] for every fenced block of a markdown page."""
    return [(m.group(1).strip().split(" ")[0].lower(), m.group(2), m.start(), m.end())
            for m in FENCE.finditer(text)]


def snippets(text):
    """[(code, expected output or None, line number)] of the page's python blocks."""
    blocks = parse_page(text)
    result = []
    for index, (language, code, start, end) in enumerate(blocks):
        if language != "python":
            continue
        expected = None
        if index + 1 < len(blocks):
            next_language, next_code, next_start, _ = blocks[index + 1]
            if next_language == "text" and text[end:next_start].strip() == "":
                expected = next_code
        result.append((code, expected, text.count("\n", 0, start) + 1))
    return result


def _normalise(output):
    return "\n".join(line.rstrip() for line in output.strip("\n").splitlines())


PAGES = sorted(p for p in DOCS.glob("*.md"))
TOPIC_PAGES = [p for p in PAGES if p.name != "README.md"]


def test_there_are_docs():
    assert len(TOPIC_PAGES) >= 10, [p.name for p in PAGES]


@pytest.mark.parametrize("page", TOPIC_PAGES, ids=lambda p: p.name)
def test_page_ends_with_a_runnable_snippet(page):
    text = page.read_text(encoding="utf-8")
    blocks = parse_page(text)
    languages = [b[0] for b in blocks]
    assert "python" in languages, f"{page.name} has no ```python snippet"
    last = languages[-1]
    assert last == "python" or (last == "text" and len(languages) > 1 and languages[-2] == "python"), \
        f"{page.name} must end with a runnable ```python snippet (and its ```text output), ends with ```{last}"
    assert text[blocks[-1][3]:].strip() == "", f"{page.name}: nothing may follow the final snippet"


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([^)#]+\.md)\)", index))
    assert linked == {p.name for p in TOPIC_PAGES}, "docs/README.md must link every page, and only existing ones"


def test_no_page_edits_the_import_path():
    """The models are tinynet.models and the helpers live in the library: a reader copies a snippet or
    a command into any folder and it runs."""
    offenders = [f"{page.name}:{number}" for page in PAGES
                 for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
                 if "sys.path" in line]
    assert not offenders, offenders


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_snippets_print_what_the_page_says(page, monkeypatch):
    text = page.read_text(encoding="utf-8")
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))      # whatever a snippet imports, the path stays as it was
    namespace = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for code, expected, line in snippets(text):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
            except Exception as error:  # show where on the page it happened
                raise AssertionError(f"{page.name}, snippet at line {line} raised "
                                     f"{type(error).__name__}: {error}") from error
        output = _normalise(buffer.getvalue())
        if expected is None:
            assert output == "", (f"{page.name}, snippet at line {line} prints but the page shows no "
                                  f"```text output after it; it printed:\n{output}")
        else:
            assert output == _normalise(expected), (
                f"{page.name}, snippet at line {line}: the page shows\n{_normalise(expected)}\n"
                f"but it printed\n{output}")


def test_parser_pairs_outputs_with_snippets():
    page = "x\n```python\nprint(1)\n```\n\n```text\n1\n```\n```\nnot run\n```\n```python\ny = 2\n```\n"
    found = snippets(page)
    assert [(c, e) for c, e, _ in found] == [("print(1)\n", "1\n"), ("y = 2\n", None)]


if __name__ == "__main__":  # python tests/test_docs.py: run the snippets of every page
    sys.exit(pytest.main([__file__, "-q"] + sys.argv[1:]))
