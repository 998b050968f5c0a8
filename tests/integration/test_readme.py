"""The README's quick start runs as written (on the bundled model, in a scratch folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text()
    section = text.split("## Quick start", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "the README has no python block under 'Quick start'"
    return m.group(1)


def test_quick_start_is_short_and_has_one_import():
    code = quick_start()
    lines = [ln for ln in code.splitlines() if ln.strip()]
    assert len(lines) <= 12, f"the quick start has {len(lines)} lines"
    assert [ln for ln in lines if ln.startswith(("import ", "from "))] == ["import jola_lens as jl"]


@pytest.mark.integration
def test_quick_start_runs_as_written(tmp_path, capsys):
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(quick_start(), str(README), "exec"), scope)
    finally:
        os.chdir(here)
    out = capsys.readouterr().out
    printed = [ln for ln in out.splitlines() if re.match(r"0\.\d+ ", ln)]  # TransformerLens logs lines too
    assert len(printed) == 1, out
    acc = float(printed[0].split()[0])
    assert 0.0 <= acc <= 1.0
    assert (tmp_path / "runs" / "mine" / "edits.safetensors").is_file()
    from jola_lens.backends import backend_of

    # make test-tl4 runs this with JOLA_LENS_BACKEND=bridge: the quick start as written, on the bridge
    assert backend_of(scope["model"]) == os.environ.get("JOLA_LENS_BACKEND", backend_of(scope["model"]))
    ed = scope["editor"]
    assert not ed.training and ed.summary()["open_gates"]["attn"]["total"] < 540  # gates closed
