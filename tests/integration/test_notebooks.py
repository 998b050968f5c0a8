"""The teaching notebooks: stored without outputs, and they run top to bottom with the small settings.

The execution test starts a Jupyter kernel on *this* interpreter (a kernelspec written to a
temporary ``JUPYTER_PATH`` that points at ``sys.executable``), sets ``JOLA_NB_SMALL=1`` (each
notebook then uses its small settings whatever its ``FULL`` says) and ``JOLA_NB_OUT`` (where the
notebooks save runs: a temporary folder shared by the three, so notebook 02 reuses the run of
notebook 01 when they run in order), and executes every cell with nbclient.

Time budget: the three together in under 10 minutes on 2 CPU cores. Measured: 455 s in all
(01: 136 s, 02: 78 s, 03: 242 s) inside the full suite with one torch thread while another training
job shared the machine. The execution times are recorded (``record_property``) and printed at the end of the
module. On a shared, busy CPU torch slows down a lot (two processes each running 2 threads on 2 cores
thrash), so the budget is asserted only when ``JOLA_NB_BUDGET_S`` (seconds per notebook) is set;
a hung cell still fails after ``CELL_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = ["01_quickstart.ipynb", "02_which_heads.ipynb", "03_ablations.ipynb"]
KERNEL_NAME = "jola-lens-test-python"
CELL_TIMEOUT_S = 1800       # one cell: a guard against hangs, generous for a busy shared CPU
TIMINGS: dict[str, float] = {}


def _read(name: str):
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


# ---- stored form (fast) ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name} has no code cells"
    dirty = [i for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs or an execution count; clear them before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_has_a_parameters_cell(name: str) -> None:
    nb = _read(name)
    params = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{name}: expected one code cell tagged 'parameters', found {len(params)}"
    assert "FULL = False" in params[0].source, f"{name}: the parameters cell should set FULL = False"
    assert any("JOLA_NB_SMALL" in c.source for c in nb.cells if c.cell_type == "code"), \
        f"{name} never reads JOLA_NB_SMALL"


# ---- execution (slow) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Environment of the kernels: our kernelspec, small settings, a shared output folder."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from analysis.render_notebooks import write_kernelspec

    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    write_kernelspec(jupyter_dir, KERNEL_NAME, "Python (jola_lens tests)")
    out_dir = tmp_path_factory.mktemp("notebook_runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(jupyter_dir))
        mp.setenv("JOLA_NB_SMALL", "1")
        mp.setenv("JOLA_NB_OUT", str(out_dir))
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            mp.setenv(key, "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        mp.setenv("WANDB_MODE", "disabled")
        yield out_dir
    if TIMINGS:
        summary = ", ".join(f"{k}: {v:.0f} s" for k, v in TIMINGS.items())
        print(f"\n[notebooks] execution times: {summary} (total {sum(TIMINGS.values()):.0f} s)")


@pytest.mark.integration
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name: str, notebook_env: Path, record_property) -> None:
    from nbclient import NotebookClient

    nb = _read(name)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=180,
        allow_errors=False,  # the first failing cell raises CellExecutionError with its traceback
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.monotonic()
    client.execute()
    seconds = time.monotonic() - start
    TIMINGS[name] = seconds
    record_property("seconds", round(seconds, 1))

    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{name}: cells raised {errors}"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") is not None for c in code), f"{name}: some code cells did not run"
    budget = os.environ.get("JOLA_NB_BUDGET_S")
    if budget:
        assert seconds < float(budget), f"{name} took {seconds:.0f} s (JOLA_NB_BUDGET_S={budget})"
    # the file on disk is untouched: execution happens on the in-memory copy only
    assert not any(c.get("outputs") for c in _read(name).cells if c.cell_type == "code")
