"""No source file names a path of one particular machine.

Files checked: every ``.py`` and ``.ipynb`` file that git knows of (``git ls-files --cached --others
--exclude-standard``: tracked files and new files not ignored, so a file is checked before it is
committed; listed files missing from the work tree are skipped, and so is this file, whose examples
are paths on purpose). ``.py`` files are parsed with
:mod:`ast`; for a notebook, the source of its code cells (IPython ``%magic`` / ``!shell`` lines
are blanked first; outputs are not looked at).

The rule, applied to every string literal (docstrings and the constant parts of f-strings
included):

1. A literal is an absolute path when its first whitespace-separated token

   * is a Windows drive path: a letter, ``:``, then ``\\`` or ``/`` (``C:\\data``, ``d:/x``), or
   * starts with ``/`` followed by a well-known top-level directory of a Unix or macOS file
     system (:data:`ROOTS`: ``/home``, ``/root``, ``/tmp``, ``/work``, ``/Users``, ``/mnt``,
     ``/opt``, ``/var``, ...), that name ending the token or followed by ``/``.

   So a lone ``"/"``, ``"//cdn"`` (a protocol-relative URL), URL paths such as ``"/api/v1"``,
   regexes such as ``"/(\\d+)/"``, and ``"a/b"``, ``"./x"`` or ``"~/x"`` are not paths. Nor are
   ``/dev/...``, ``/proc/...`` and ``/sys/...``: the kernel's interfaces (``/dev/null``,
   ``/proc/self/status``) are the same on every machine, so they are not in :data:`ROOTS`.
2. Wherever it occurs inside any literal or comment, the absolute path of this checkout, or of
   the user's home directory when that has two or more parts (``/home/me``, not ``/root``, which
   rule 1 covers), as found on the machine running the test, is a leak: e.g. a docstring example
   that shows ``/home/me/jola_lens/...``.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import tokenize
from pathlib import Path

import pytest

ROOTS = (
    "bin", "boot", "content", "data", "etc", "gpfs", "home", "kaggle", "lib", "lib64", "lustre", "media",
    "mnt", "net", "nfs", "opt", "private", "root", "run", "sbin", "scratch", "snap", "srv", "tmp", "Users",
    "usr", "var", "Volumes", "work", "workspace",
)

_POSIX = re.compile(r"/(?:%s)(?:/\S*)?" % "|".join(re.escape(r) for r in ROOTS))
_WINDOWS = re.compile(r"[A-Za-z]:[\\/]\S*")


def is_absolute_path_literal(text: str) -> bool:
    """Rule 1 of the module docstring."""
    tokens = text.split()
    if not tokens:
        return False
    return bool(_POSIX.fullmatch(tokens[0]) or _WINDOWS.fullmatch(tokens[0]))


def _machine_paths() -> list[str]:
    """This checkout's absolute path, and the home directory's when it has two or more parts (rule 2)."""
    found = [str(Path(__file__).resolve().parents[1])]
    home = Path.home()
    if len(home.parts) >= 3 and str(home) not in found:  # ("/", "home", "me")
        found.append(str(home))
    return found


def _leak_pattern(paths: list[str]) -> re.Pattern[str] | None:
    if not paths:
        return None
    alts = "|".join(re.escape(p) for p in sorted(paths, key=len, reverse=True))
    return re.compile(r"(?<![\w.~/\\-])(?:%s)(?![\w.~-])" % alts)


def _notebook_code(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()]
        cells.append("\n".join(lines))
    return "\n\n".join(cells)


def _string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    return [(getattr(node, "lineno", 0), node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _comments(source: str) -> list[tuple[int, str]]:
    try:
        return [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return []


def offences(source: str, name: str, leak: re.Pattern[str] | None = None) -> list[str]:
    """``"name:line: ..."`` for each literal or comment of ``source`` that breaks the rule."""
    tree = compile(source, name, "exec", flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                   dont_inherit=True)
    found: list[tuple[int, str]] = []
    for line, text in _string_literals(tree):
        if is_absolute_path_literal(text):
            found.append((line, f"absolute path {text.split()[0]!r}"))
        elif leak is not None and (m := leak.search(text)):
            found.append((line, f"this machine's path {m.group(0)!r} inside a string"))
    if leak is not None:
        for line, text in _comments(source):
            if m := leak.search(text):
                found.append((line, f"this machine's path {m.group(0)!r} in a comment"))
    return [f"{name}:{line}: {what}" for line, what in sorted(found)]


def _listed_files(root: Path) -> list[Path]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot list the repository's files")
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.py", "*.ipynb"],
            cwd=root, capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        pytest.skip(f"not a usable git checkout ({type(e).__name__}): cannot list the repository's files")
    files = sorted({root / p for p in out.split("\0") if p})
    return [f for f in files if f.is_file()]


def test_no_absolute_paths_in_sources():
    root = Path(__file__).resolve().parents[1]
    files = _listed_files(root)  # this file included: its examples are built at run time
    assert files, "git lists no .py or .ipynb file"
    leak = _leak_pattern(_machine_paths())
    found: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            source = _notebook_code(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
            found += offences(source, rel, leak)
        except (SyntaxError, ValueError, UnicodeDecodeError) as e:  # ValueError: bad JSON or NUL bytes
            found.append(f"{rel}: could not be parsed ({type(e).__name__}: {e})")
    assert not found, "absolute machine paths in the sources:\n" + "\n".join(found)


def _abs(rest: str) -> str:
    """An absolute path built at run time, so this file's own sources hold no absolute path literal."""
    return "/" + rest


def _drive(letter: str, rest: str) -> str:
    return letter + ":" + rest


@pytest.mark.parametrize("text", [
    _abs("work/main/jola_lens"), _abs("home/me"), _abs("root"), _abs("tmp"), _abs("tmp/run x"),
    _abs("Users/me/x.py"), _drive("C", "\\data\\x"), _drive("d", "/models"), _abs("mnt/"), _abs("var/lib/x"),
    _abs("opt/conda/bin/python"),
])
def test_rule_flags_paths(text):
    assert is_absolute_path_literal(text)


@pytest.mark.parametrize("text", [
    "/", "", "  ", "//cdn.example.org/x.js", "/api/v1/models", r"/(\d+)/", "a/b", "./x", "../x",
    "~/x", "/dev/null", "/proc/self/status", "/sys/class", "https://example.org/home/x", "n_layers / n_heads",
    "/workshop", "/homework",
    "and/or", "1/2", "C:", "x: y",
])
def test_rule_lets_non_paths_through(text):
    assert not is_absolute_path_literal(text)


def test_offences_cover_docstrings_fstrings_and_machine_paths():
    tmp, home, proj = _abs("tmp/"), _abs("home/me/x"), _abs("srv/checkout/proj")
    src = (
        '"""Module doc."""\n'
        f'x = f"{tmp}{{1}}"\n'
        'def f():\n'
        f'    """See {home}."""\n'  # not the first token: rule 1 leaves it
        f'    return "ok"  # lives in {proj}\n'
        f'y = "run from {proj}/tests"\n'
    )
    leak = _leak_pattern([proj])
    found = offences(src, "m.py", leak)
    assert found == [
        f"m.py:2: absolute path '{tmp}'",
        f"m.py:5: this machine's path '{proj}' in a comment",
        f"m.py:6: this machine's path '{proj}' inside a string",
    ], found
    assert offences(src.replace(proj, proj + "ect"), "m.py", leak) == [
        f"m.py:2: absolute path '{tmp}'"]


def test_notebook_magics_are_blanked(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n", "!pip list\n", "x = 1\n"]},
                    {"cell_type": "markdown", "source": [_abs("home/me is prose here")]},
                    {"cell_type": "code", "source": f"p = '{_abs('home/me/data')}'"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    assert offences(_notebook_code(path), "n.ipynb") == [f"n.ipynb:5: absolute path '{_abs('home/me/data')}'"]


def test_rule_two_uses_this_checkout():
    paths = _machine_paths()
    assert paths[0] == str(Path(__file__).resolve().parents[1])
    assert all(os.path.isabs(p) and len(Path(p).parts) >= 2 for p in paths)
