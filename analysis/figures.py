"""Render the figures of a real run to PNG (and HTML) for the documentation.

    python -m analysis.figures --run demo_out --out docs/figures \\
        --selection-study analysis/results/compare_selection --main-table analysis/results/main_table \\
        --size-study analysis/results/data_size \\
        --dev-summary analysis/results/dev_tasks/demo/summary.json analysis/results/dev_tasks_e2e/demo/summary.json

From the run folder (``jola-lens demo`` / ``jola-lens train`` output; no model needed):
``gate_trajectories``, ``head_heatmap``, ``prob_open_histogram`` and the first and last frames of
the additive gates' animation (``gate_animation_a_first`` / ``_last``; the HTML keeps the slider).

From the studies' folders (no model needed): ``--selection-study`` (``analysis.compare_selection``):
``selection_grid`` and ``selection_jaccard`` of the first seed's masks for ``--task``;
``--main-table`` (``analysis.main_table``): ``main_table_bars``; ``--dev-summary``
(``analysis.dev_tasks``): ``dev_tasks_bars`` (zero-shot vs JoLA per task); ``--size-study``
(``analysis.data_size``): ``accuracy_vs_size``. ``--no-run`` skips the run figures.

PNG needs kaleido >= 1 and a headless Chromium (``jola_lens.plots.PNG_EXPORT_HELP`` says how);
``--html`` also writes the self-contained HTML files (about 5 MB each: plotly.js is embedded).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch

from analysis.common import CONTROLS
from jola_lens import plots
from jola_lens.train import GateLog

PNG = {"on": True}  # --no-png turns it off (HTML only: no kaleido or browser needed)


def _write(fig: go.Figure, out: Path, name: str, html: bool, written: list[Path], **png_kw: Any) -> None:
    if PNG["on"]:
        written.append(plots.save_png(fig, out / f"{name}.png", **png_kw))
    if html:
        written.append(plots.save_html(fig, out / f"{name}.html"))


def frame_figure(anim: go.Figure, index: int, title: str) -> go.Figure:
    """One frame of an animated figure as a static figure (no slider, no buttons)."""
    frame = anim.frames[index]
    fig = go.Figure(data=frame.data, layout=anim.layout)
    fig.layout.sliders = ()
    fig.layout.updatemenus = ()
    fig.update_layout(title_text=title)
    return fig


def run_figures(run: Path, out: Path, html: bool) -> tuple[list[Path], int]:
    written: list[Path] = []
    log = GateLog.load(run)
    # all 270 sampled-gate lines are a blur in a still image: the PNG shows the 12 heads that end most
    # open (and the open-gate counts over all heads); the HTML keeps every head
    _write(plots.gate_trajectories(log, max_heads=12, title="JoLA gates during training (12 most open heads)"),
           out, "gate_trajectories", False, written)
    if html:
        written.append(plots.save_html(plots.gate_trajectories(log), out / "gate_trajectories.html"))
    gates, norms = plots.load_final_gates(run)
    _write(plots.head_heatmap(gates, norms), out, "head_heatmap", html, written)
    _write(plots.open_count_histogram(log), out, "prob_open_histogram", html, written)
    anim = plots.gate_animation(log, "a")
    if html:
        written.append(plots.save_html(anim, out / "gate_animation_a.html"))
    n = len(anim.frames)
    _write(frame_figure(anim, 0, f"additive gates at the first logged step (frame 1 of {n})"), out,
           "gate_animation_a_first", False, written)
    _write(frame_figure(anim, n - 1, f"additive gates at the last logged step (frame {n} of {n})"), out,
           "gate_animation_a_last", False, written)
    union = torch.zeros_like(next(iter(gates.values())), dtype=torch.bool)
    for g in gates.values():
        union |= g > 0
    k = int(union.sum())
    return written, k


def selection_figures(study: Path, out: Path, task: str, html: bool) -> list[Path]:
    """Selection grid and Jaccard matrix from ``python -m analysis.compare_selection`` (first seed's masks)."""
    sel = json.loads((study / "selection.json").read_text())
    if task not in sel:
        raise SystemExit(f"{study / 'selection.json'} has no task {task!r} (it has {sorted(sel)})")
    entry = sel[task]
    shape = tuple(entry.get("shape", (30, 9)))
    masks: dict[str, torch.Tensor] = {}
    for name, by_seed in entry["masks"].items():
        first = sorted(by_seed, key=int)[0]
        m = torch.zeros(shape, dtype=torch.bool)
        for layer, head in by_seed[first]:
            m[layer, head] = True
        masks[name] = m
    k = entry["k"]
    written: list[Path] = []
    _write(plots.selection_grid(masks, title=f"heads chosen at K = {k} ({task}; JoLA = its open heads)"), out,
           "selection_grid", html, written)
    _write(plots.jaccard_matrix(masks, title=f"Jaccard overlap of the selected heads, K = {k} ({task})"), out,
           "selection_jaccard", html, written)
    return written


def main_table_bars(study: Path, out: Path, html: bool) -> list[Path]:
    """Per-task bars of every method from ``python -m analysis.main_table``'s runs."""
    from analysis.main_table import LABELS

    runs = [json.loads(p.read_text()) for p in sorted((study / "runs").glob("*.json"))]
    rows = [{"task": r["task"], "method": LABELS.get(r["method"], r["method"]), "accuracy": r["accuracy"],
             "stderr": r.get("likelihood_acc_stderr")} for r in runs if r.get("accuracy") is not None]
    order = list(LABELS.values())
    rows.sort(key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
    written: list[Path] = []
    _write(plots.method_bars(rows, title="accuracy per task and method (option-text likelihood; bars: SE)"), out,
           "main_table_bars", html, written, width=1100)
    return written


def dev_bars(summaries: list[Path], out: Path, html: bool) -> list[Path]:
    rows = [r for summary in summaries for r in json.loads(summary.read_text())]
    bars = []
    for r in rows:
        task = r["task"]
        for method, key in (("zero-shot", "zero_shot"), ("JoLA", "jola"), *((v, k) for k, v in CONTROLS.items())):
            if key in CONTROLS:  # summaries written before both controls were kept have the first as "majority"
                value = r.get(key, r.get("majority") if key == "commonest_training_label" else None)
            else:
                value = r.get(f"{key}.likelihood_acc", r.get(f"{key}.rouge_l"))
            if value is not None:
                bars.append({"task": task, "method": method, "accuracy": value})
    written: list[Path] = []
    _write(plots.method_bars(bars, title="zero-shot vs JoLA (likelihood accuracy; E2E: ROUGE-L)"), out,
           "dev_tasks_bars", html, written)
    return written


def size_curve(study: Path, out: Path, html: bool) -> list[Path]:
    """Accuracy vs training-set size from ``python -m analysis.data_size``'s runs."""
    from analysis.data_size import size_figure

    runs = [json.loads(p.read_text()) for p in sorted((study / "runs").glob("*.json"))]
    written: list[Path] = []
    _write(size_figure(runs, "ARC-Easy likelihood accuracy vs training examples"), out, "accuracy_vs_size", html,
           written)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo_out", help="a run folder (edits + gate log)")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--no-run", action="store_true", help="skip the run figures")
    ap.add_argument("--selection-study", default=None, help="python -m analysis.compare_selection output")
    ap.add_argument("--task", default="ARC-Easy", help="the task of the selection figures")
    ap.add_argument("--main-table", default=None, help="python -m analysis.main_table output")
    ap.add_argument("--dev-summary", nargs="*", default=[], help="analysis.dev_tasks summary.json files")
    ap.add_argument("--size-study", default=None, help="python -m analysis.data_size output")
    ap.add_argument("--html", action="store_true", help="also write the HTML files")
    ap.add_argument("--no-png", action="store_true", help="HTML only (with --html)")
    args = ap.parse_args(argv)
    PNG["on"] = not args.no_png
    out, run = Path(args.out), Path(args.run)
    written: list[Path] = []
    if not args.no_run:
        written += run_figures(run, out, args.html)[0]
    if args.selection_study:
        written += selection_figures(Path(args.selection_study), out, args.task, args.html)
    if args.main_table:
        written += main_table_bars(Path(args.main_table), out, args.html)
    if args.dev_summary:
        written += dev_bars([Path(p) for p in args.dev_summary], out, args.html)
    if args.size_study:
        written += size_curve(Path(args.size_study), out, args.html)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
