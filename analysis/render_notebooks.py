"""Execute the teaching notebooks and render them, outputs and figures included, to ``docs/notebooks/``.

    python -m analysis.render_notebooks            # all three (about 8 minutes on 2 CPU cores)
    python -m analysis.render_notebooks --only 01_quickstart
    make notebooks                                 # the same as the first line

The committed notebooks under ``notebooks/`` stay free of outputs (``tests/integration/test_notebooks.py``);
this command runs each one top to bottom in a fresh kernel of this interpreter, with the notebooks' small
settings (``JOLA_NB_SMALL=1``: the same settings the tests run) and their runs saved to a temporary folder
shared by the three (so 02 reuses the run of 01), and writes

* ``docs/notebooks/<name>.html``: the executed notebook, every output and interactive plotly figure in
  place; open it in a browser. The figures use the one ``plotly.min.js`` this command writes beside them
  (4.8 MB once instead of once per file; it is plotly's own file, so git ignores it) and, where it is
  absent (a fresh clone), the same version from plotly's CDN; the formulas use MathJax from its CDN.
* ``docs/notebooks/manifest.json``: per notebook, the SHA-256 of its cells' sources (``source_digest``),
  the seconds it took, the settings and the package versions.

``tests/test_docs.py`` checks that every committed notebook's digest matches the manifest and the HTML
file: a notebook changed without re-rendering fails the tests until this command is run again.

Figures: the kernel runs with ``PLOTLY_RENDERER=plotly_mimetype`` (each ``fig.show()`` stores the figure
as JSON, not a copy of plotly.js), and each figure's JSON becomes a ``<div>`` drawn by ``Plotly.newPlot``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
DOCS_DIR = REPO / "docs" / "notebooks"
KERNEL_NAME = "jola-lens-render-python"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
SOURCE_META = "jola-lens-notebook-source"
CELL_TIMEOUT_S = 1800


def notebook_names() -> list[str]:
    """The committed notebooks, by file stem, in order (``01_quickstart``, ...)."""
    return sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))


def source_digest(path: str | Path) -> str:
    """SHA-256 over the type and source text of every cell of the notebook at ``path`` (outputs ignored).

    >>> import json, tempfile, pathlib
    >>> cell = {"cell_type": "code", "source": "print(1)", "metadata": {}, "outputs": [], "execution_count": None}
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "n.ipynb"
    >>> _ = f.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    >>> a = source_digest(f)
    >>> cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1"}]
    >>> _ = f.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    >>> source_digest(f) == a          # outputs do not count
    True
    >>> cell["source"] = "print(2)"
    >>> _ = f.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    >>> source_digest(f) == a          # sources do
    False
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    parts = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        parts.append([cell.get("cell_type", ""), "".join(src) if isinstance(src, list) else src])
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


def write_kernelspec(jupyter_dir: Path, name: str = KERNEL_NAME,
                     display_name: str = "Python (jola_lens render)") -> None:
    """A Jupyter kernelspec ``name`` under ``jupyter_dir`` (put it on ``JUPYTER_PATH``) that starts a kernel of
    *this* interpreter, so notebooks run against the installed jola_lens (also used by the notebook tests)."""
    spec_dir = jupyter_dir / "kernels" / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": display_name,
        "language": "python",
    }))


def _plotly_outputs_to_html(nb: Any) -> int:
    """Replace every plotly JSON output by an HTML ``<div>`` drawn with the shared plotly.js; returns how many."""
    import plotly.io as pio

    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if PLOTLY_MIME not in data:
                continue
            fig = data[PLOTLY_MIME]
            html = pio.to_html(fig, include_plotlyjs=False, full_html=False,
                               config={"responsive": True, "displaylogo": False})
            out["data"] = {"text/html": html}
            n += 1
    return n


def _stderr_texts(nb: Any) -> list[str]:
    return ["".join(o.get("text", "")) for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr"]


def render(name: str, out_dir: Path = DOCS_DIR, runs_dir: Path | None = None) -> dict[str, Any]:
    """Execute notebook ``name`` (a file stem) and write ``out_dir/<name>.html``; returns its manifest entry."""
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    path = NOTEBOOK_DIR / f"{name}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"no notebook {path.relative_to(REPO)} (have: {', '.join(notebook_names())})")
    digest = source_digest(path)
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as jupyter_dir:
        write_kernelspec(Path(jupyter_dir))
        env = {
            "JUPYTER_PATH": jupyter_dir, "JOLA_NB_SMALL": "1", "PLOTLY_RENDERER": "plotly_mimetype",
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
        }
        if runs_dir is not None:
            env["JOLA_NB_OUT"] = str(runs_dir)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            client = NotebookClient(nb, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_S, startup_timeout=180,
                                    allow_errors=False, resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
            start = time.monotonic()
            client.execute()
            seconds = time.monotonic() - start
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    warnings = [t for t in _stderr_texts(nb) if "IProgress" in t or "ipywidgets" in t]
    if warnings:
        raise RuntimeError(f"{name}: a cell printed a progress-widget warning: {warnings[0][:200]!r}")
    n_figures = _plotly_outputs_to_html(nb)
    nb.metadata["jola_lens"] = {"source_sha256": digest}
    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": name}})
    # plotly.js first in <head>: loaded before require.js defines `define`, so it sets window.Plotly
    head = (f'<meta name="{SOURCE_META}" content="{digest}">\n'
            f'<script src="{PLOTLY_JS}" charset="utf-8"></script>\n'
            f"<script>window.Plotly || document.write('<script src=\"{plotly_cdn_url()}\" "
            f"charset=\"utf-8\"><\\/script>')</script>\n")
    charset = '<meta charset="utf-8"/>'
    at = html.index(charset) + len(charset) if charset in html else html.index("<head>") + len("<head>")
    html = html[:at] + "\n" + head + html[at:]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.html").write_text(html, encoding="utf-8")
    return {"source_sha256": digest, "seconds": round(seconds, 1), "figures": n_figures,
            "code_cells": sum(c.cell_type == "code" for c in nb.cells)}


def plotly_cdn_url() -> str:
    """Where plotly's CDN serves the plotly.js of the installed plotly (the fallback of a fresh clone)."""
    from plotly.offline import get_plotlyjs_version

    return f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"


def write_plotly_js(out_dir: Path = DOCS_DIR) -> Path:
    """The plotly.js bundle of the installed plotly, once, beside the HTML files."""
    from plotly.offline import get_plotlyjs

    target = out_dir / PLOTLY_JS
    text = get_plotlyjs()
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        out_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return target


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {pkg: version(pkg) for pkg in ("jola-lens", "torch", "transformer-lens", "transformers", "plotly")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.render_notebooks", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="notebook stems to render (default: all)")
    parser.add_argument("--out", type=Path, default=DOCS_DIR, help="output folder (default: docs/notebooks)")
    args = parser.parse_args(argv)
    names = args.only or notebook_names()
    unknown = [n for n in names if n not in notebook_names()]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; have {notebook_names()}")
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.setdefault("notebooks", {})
    manifest["settings"] = "the notebooks' small settings (JOLA_NB_SMALL=1), one kernel per notebook, in order"
    manifest["versions"] = _versions()
    manifest["threads"] = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    write_plotly_js(args.out)
    with tempfile.TemporaryDirectory() as runs:
        for name in names:
            print(f"[render] {name} ...", flush=True)
            entry = render(name, args.out, Path(runs))
            entry["rendered"] = time.strftime("%Y-%m-%d")
            manifest["notebooks"][name] = entry
            print(f"[render] {name}: {entry['seconds']:.0f} s, {entry['figures']} figures -> "
                  f"{(args.out / (name + '.html')).relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}",
                  flush=True)
            manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for stale in set(manifest["notebooks"]) - set(notebook_names()):
        del manifest["notebooks"][stale]
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
