"""The rendered notebooks under docs/notebooks/ are current: made from the committed notebooks as they are now.

``make notebooks`` (``python -m analysis.render_notebooks``) writes them; these checks read files only.
"""

from __future__ import annotations

import json
import re

import pytest

from analysis.render_notebooks import DOCS_DIR, NOTEBOOK_DIR, PLOTLY_JS, SOURCE_META, notebook_names, source_digest

NAMES = notebook_names()


def _manifest() -> dict:
    path = DOCS_DIR / "manifest.json"
    assert path.is_file(), "docs/notebooks/manifest.json is missing: run `make notebooks`"
    return json.loads(path.read_text())


def test_every_notebook_is_rendered():
    assert NAMES == ["01_quickstart", "02_which_heads", "03_ablations"]
    assert sorted(_manifest()["notebooks"]) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_rendered_notebook_is_current(name):
    digest = source_digest(NOTEBOOK_DIR / f"{name}.ipynb")
    entry = _manifest()["notebooks"][name]
    assert entry["source_sha256"] == digest, (
        f"notebooks/{name}.ipynb changed since docs/notebooks/{name}.html was rendered: run `make notebooks`")
    html = (DOCS_DIR / f"{name}.html").read_text(encoding="utf-8")
    found = re.search(rf'<meta name="{SOURCE_META}" content="([0-9a-f]{{64}})">', html)
    assert found and found.group(1) == digest, f"docs/notebooks/{name}.html is not the rendering of the notebook"


@pytest.mark.parametrize("name", NAMES)
def test_rendered_notebook_has_its_outputs_and_figures(name):
    html = (DOCS_DIR / f"{name}.html").read_text(encoding="utf-8")
    entry = _manifest()["notebooks"][name]
    assert entry["figures"] >= 1 and html.count("Plotly.newPlot(") == entry["figures"]
    # plotly.js (4.8 MB) is not embedded: the local copy `make notebooks` writes, else plotly's CDN
    assert f'<script src="{PLOTLY_JS}"' in html and re.search(r"https://cdn\.plot\.ly/plotly-[0-9.]+\.min\.js", html)
    assert len(html.encode()) < 2_000_000
    for bad in ("IProgress", "Traceback (most recent call last)", "ipywidgets"):
        assert bad not in html, f"docs/notebooks/{name}.html shows {bad!r}"
    assert entry["seconds"] > 0 and entry["code_cells"] >= 5


def test_first_cell_says_how_long_it_takes():
    for name in NAMES:
        nb = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())
        first = "".join(nb["cells"][0]["source"])
        assert re.search(r"\d+ (s|min)", first) and "laptop" in first, f"{name}: the first cell gives no run time"


def test_source_digest_follows_the_sources_not_the_outputs(tmp_path):
    cell = {"cell_type": "code", "source": ["x = 1\n", "x"], "metadata": {}, "outputs": [], "execution_count": None}
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    first = source_digest(path)
    cell["outputs"], cell["execution_count"] = [{"output_type": "execute_result", "data": {"text/plain": "1"},
                                                  "metadata": {}, "execution_count": 1}], 1
    path.write_text(json.dumps(nb))
    assert source_digest(path) == first
    cell["source"] = "x = 2\nx"
    path.write_text(json.dumps(nb))
    assert source_digest(path) != first
