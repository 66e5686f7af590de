"""The documentation points only at things that exist (fast, pure Python: no torch, no trl).

* README.md and every docs/*.md: each relative Markdown link target, and each repository path in backticks or in a
  fenced code block (``trl_ext/...``, ``recipes/...``, ``docs/...``, ``accelerate_configs/...``, ``benchmarks/...``,
  ``tests/...``, ``.ci/...``) exists; ``#anchors`` and ``:line`` / ``::symbol`` suffixes are ignored, and so are URLs
  and placeholder or glob patterns (``<algo>``, ``*``, ``{a,b}``, ``$VAR``). Dotted names ``trl_ext.x.y`` resolve to a
  module and, if longer, to a name that module defines; ``from trl_ext... import a, b`` in code blocks imports names
  the module defines.
* The code (tracked ``*.py`` / ``*.yaml`` under trl_ext/, recipes/, benchmarks/) cites only docs/*.md files that exist
  (``UPSTREAM_DOCS`` lists the paths that name another project's documentation).
* README.md stays short (at most ``README_MAX_BYTES``) and no documentation page cites the design notes, which are
  not part of the project.

A failure names the citing file, its line and the missing path.
"""

from __future__ import annotations

import ast
import functools
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_BYTES = 12 * 1024
# Top-level folders whose paths the docs cite; a token starting with one of these is a repository path.
PATH_PREFIXES = ("trl_ext/", "recipes/", "docs/", "accelerate_configs/", "benchmarks/", "tests/", ".ci/")
CODE_DIRS = ("trl_ext", "recipes", "benchmarks")
# docs/*.md paths that the code cites from another project's repository, not from this one.
UPSTREAM_DOCS = {
    "docs/algo/baseline.md": "verl's GSM8K baselines page, cited in recipes/configs/gsm8k/*.yaml",
}
PLACEHOLDER_CHARS = set("<>*?{}[]$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
TOKEN_SPLIT = re.compile(r"[\s()\"',;=|]+")
DOTTED = re.compile(r"trl_ext(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(
    r"^[ \t]*from[ \t]+(trl_ext(?:\.\w+)*)[ \t]+import[ \t]+(?:\(([\w\s,]+)\)|([\w \t,]+))", re.MULTILINE
)
SOURCE_DOC_CITATION = re.compile(r"(?<![\w./-])docs/[\w./-]*?\.md\b")


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def split_fences(text: str) -> tuple[str, list[tuple[int, str]]]:
    """``text`` with fenced code blocks blanked out (line numbers kept), and the blocks' lines as (line number, text)."""
    prose, code, fenced = [], [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            prose.append("")
        elif fenced:
            code.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), code


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def path_problem(token: str) -> str | None:
    """Why a repository-path token points at nothing, or None (exists, or not a checkable path)."""
    token = token.strip().lstrip("(").rstrip(".,:;)")
    if token.startswith("./"):
        token = token[2:]
    if not token.startswith(PATH_PREFIXES) or PLACEHOLDER_CHARS & set(token) or "..." in token:
        return None
    path = token.split("#", 1)[0].split(":", 1)[0]  # drop #anchor, :line and ::symbol
    return None if (REPO / path).exists() else f"`{path}` does not exist"


def module_file(parts: list[str]) -> Path | None:
    base = REPO.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def defined_names(path: Path) -> frozenset[str]:
    """Names a module defines at top level (also inside top-level if/try blocks): functions, classes, assignments,
    imports, and the string keys/items of top-level dicts/lists (lazy exports such as ``_LAZY`` and ``__all__``)."""
    names: set[str] = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
            elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                if node.value is not None:
                    names.update(
                        n.value for n in ast.walk(node.value) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                    )
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body)
    return frozenset(names)


def dotted_problem(dotted: str) -> str | None:
    """Why ``trl_ext.a.b.c`` names nothing: its longest module prefix must exist and define the next name."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        found = module_file(parts[:end])
        if found is not None:
            break
    else:
        return f"`{dotted}`: no such module"
    rest = parts[end:]
    if rest and rest[0] not in defined_names(found):
        return f"`{dotted}`: {'.'.join(parts[:end])} ({rel(found)}) defines no `{rest[0]}`"
    return None


def page_problems(page: Path) -> list[str]:
    return text_problems(page.read_text(encoding="utf-8"), rel(page), page.parent)


def text_problems(text: str, where: str, base_dir: Path) -> list[str]:
    """Problems of a Markdown text shown as ``where``, whose relative links resolve against ``base_dir``."""
    prose, code = split_fences(text)
    problems = []

    for match in LINK.finditer(prose):
        target = match.group(1)
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor in the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        resolved = (base_dir / path).resolve()
        line = line_of(prose, match.start())
        if not resolved.is_relative_to(REPO):
            problems.append(f"{where}:{line}: link ({target}) points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where}:{line}: link ({target}) -> {resolved.relative_to(REPO).as_posix()} does not exist")

    snippets = [(line_of(prose, m.start()), m.group(1)) for m in CODE_SPAN.finditer(prose)] + code
    for line, snippet in snippets:
        for token in TOKEN_SPLIT.split(snippet):
            problem = path_problem(token)
            if problem is None and DOTTED.fullmatch(token.rstrip(".,:;")):
                problem = dotted_problem(token.rstrip(".,:;"))
            if problem:
                problems.append(f"{where}:{line}: {problem}")

    code_text = "\n".join(line for _, line in code)
    for match in FROM_IMPORT.finditer(code_text):
        module, names = match.group(1), (match.group(2) or match.group(3)).replace("\n", " ").split(",")
        line = code[code_text.count("\n", 0, match.start())][0]
        found = module_file(module.split("."))
        if found is None:
            problems.append(f"{where}:{line}: `from {module} import ...`: no such module")
            continue
        for name in filter(None, (n.split(" as ")[0].strip() for n in names)):
            if name not in defined_names(found) and module_file([*module.split("."), name]) is None:
                problems.append(f"{where}:{line}: `from {module} import {name}`: {rel(found)} defines no `{name}`")
    return problems


@pytest.mark.parametrize("page", doc_pages(), ids=rel)
def test_documentation_points_at_existing_files(page):
    problems = page_problems(page)
    assert not problems, f"{rel(page)} cites what does not exist:\n" + "\n".join(problems)


def tracked_code_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *CODE_DIRS], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=60).stdout
        files = [REPO / name for name in out.split("\0") if name]
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout: every file under the folders
        files = [p for d in CODE_DIRS for p in (REPO / d).rglob("*") if p.is_file()]
    return sorted(p for p in files if p.suffix in (".py", ".yaml", ".yml") and p.is_file())


def test_code_cites_existing_docs():
    files = tracked_code_files()
    assert any(p.name == "ppo_config.py" for p in files), "found none of the code files (git ls-files failed?)"
    problems = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in SOURCE_DOC_CITATION.finditer(line):
                cited = match.group(0)
                if cited not in UPSTREAM_DOCS and not (REPO / cited).is_file():
                    problems.append(f"{rel(path)}:{number}: cites `{cited}`, which does not exist")
    assert not problems, (
        "code cites docs pages that do not exist (write the page, fix the path, or, for another project's "
        "documentation, add it to UPSTREAM_DOCS):\n" + "\n".join(problems)
    )


def test_readme_is_short():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move detail to a docs/*.md page and link it"
    )


def test_docs_do_not_cite_the_design_notes():
    problems = [
        f"{rel(page)}:{number}: {line.strip()[:100]}"
        for page in doc_pages()
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"design[ _-]?notes", line, re.IGNORECASE)
    ]
    assert not problems, "the design notes are not part of the project; state the fact instead:\n" + "\n".join(problems)


def test_the_checker_finds_what_is_missing():
    """The checks above catch a broken link, path, dotted name or import, and let URLs and placeholders pass."""
    text = (
        "[ok](testbed.md#what-rl-learns) [web](https://example.org/docs/x.md) [gone](missing.md) [out](../../x.md)\n"
        "`trl_ext/eval.py:12` `trl_ext/eval.py::main` `recipes/<algo>_math.py` `trl_ext/*.py` `docs/none.md#a`\n"
        "`trl_ext.core.ppo.gae` `trl_ext.recipe.RecipeRun` `trl_ext.core.ppo.nope` `trl_ext.no_such`\n"
        "```python\nfrom trl_ext.rewards import accuracy_reward, nope\n"
        "accelerate launch recipes/dapo_math.py --config recipes/configs/none.yaml\n```\n"
    )
    problems = "\n".join(text_problems(text, "probe.md", REPO / "docs"))
    expected = [
        "probe.md:1: link (missing.md) -> docs/missing.md does not exist",
        "probe.md:1: link (../../x.md) points outside the repository",
        "probe.md:2: `docs/none.md` does not exist",
        "probe.md:3: `trl_ext.core.ppo.nope`: trl_ext.core.ppo (trl_ext/core/ppo.py) defines no `nope`",
        "probe.md:3: `trl_ext.no_such`: trl_ext (trl_ext/__init__.py) defines no `no_such`",
        "probe.md:6: `recipes/configs/none.yaml` does not exist",
        "probe.md:5: `from trl_ext.rewards import nope`: trl_ext/rewards/__init__.py defines no `nope`",
    ]
    for line in expected:
        assert line in problems, f"missing {line!r} in:\n{problems}"
    assert len(problems.splitlines()) == len(expected), problems
