"""Render the figures of a real run to PNG (and HTML) for the documentation.

    python -m analysis.figures --run demo_out --out docs/figures \\
        --selectors lofit dsp pass iti smp random --select-epochs 1 \\
        --dev-summary analysis/results/dev_tasks/demo/summary.json

From the run folder (``jola-lens demo`` / ``jola-lens train`` output; no model needed):
``gate_trajectories``, ``head_heatmap``, ``prob_open_histogram`` and the first and last frames of
the additive gates' animation (``gate_animation_a_first`` / ``_last``; the HTML keeps the slider).

With ``--selectors``: loads the bundled model, runs each selector on the demo's training data at
K = the run's number of open heads (JoLA's mask: its K heads with the highest P(open)), and draws
``selection_grid`` and ``selection_jaccard``; the masks go to ``selection.json``. Trained selectors
get ``--select-epochs`` epochs (1 by default: a budget for figures, not the comparison study).

With ``--dev-summary`` (``python -m analysis.dev_tasks`` output): ``dev_tasks_bars`` (zero-shot vs
JoLA per task). With ``--size-runs DIR ...`` (run folders trained on different numbers of
examples, each with a ``results.json``): ``accuracy_vs_size``.

PNG needs kaleido >= 1 and a headless Chromium (``jola_lens.plots.PNG_EXPORT_HELP`` says how);
``--html`` also writes the self-contained HTML files (about 5 MB each: plotly.js is embedded).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import torch

from jola_lens import plots
from jola_lens.train import GateLog


def _write(fig: go.Figure, out: Path, name: str, html: bool, written: list[Path], **png_kw: Any) -> None:
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


def selection_figures(run: Path, out: Path, names: list[str], k: int, epochs: int, html: bool,
                      seed: int) -> list[Path]:
    from jola_lens.experiment import TaskSpec, load_task_data, tokenize_splits
    from jola_lens.loading import load_model
    from jola_lens.model import JoLAModel
    from jola_lens.selection import select, top_k_mask

    model = load_model(verbose=False)
    spec = TaskSpec(task="demo")
    td = load_task_data(spec)
    prepend_bos = bool(getattr(model.cfg, "default_prepend_bos", False))
    train, _ = tokenize_splits(model.tokenizer, td, spec, prepend_bos)
    jola = JoLAModel.load(run, model)
    scores = torch.stack(list(jola.prob_open().values())).amax(0)
    masks: dict[str, torch.Tensor] = {"jola": top_k_mask(scores, k)}
    record: dict[str, Any] = {"k": k, "run": str(run), "seed": seed, "epochs": epochs, "methods": {}}
    trained = {"lofit", "dsp", "pass"}
    for name in names:
        t0 = time.time()
        opts = {"epochs": epochs} if name in trained else {}
        res = select(name, model, train, k=k, seed=seed, **opts)
        masks[name] = res.mask
        record["methods"][name] = {"seconds": round(time.time() - t0, 1), "steps": res.record.get("steps"),
                                   "heads": res.heads()}
        print(f"[figures] {name}: {res.record.get('steps')} steps, {time.time() - t0:.0f} s")
    record["methods"]["jola"] = {"heads": [tuple(x) for x in torch.nonzero(masks["jola"]).tolist()]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps(record, indent=1))
    written: list[Path] = [out / "selection.json"]
    title = f"heads chosen at K = {k} (ARC-Easy demo data; trained selectors: {epochs} epoch(s))"
    _write(plots.selection_grid(masks, title=title), out, "selection_grid", html, written)
    _write(plots.jaccard_matrix(masks, title=f"Jaccard overlap of the selected heads, K = {k}"), out,
           "selection_jaccard", html, written)
    return written


def dev_bars(summary: Path, out: Path, html: bool) -> list[Path]:
    rows = json.loads(summary.read_text())
    bars = []
    for r in rows:
        task = r["task"]
        for method, key in (("zero-shot", "zero_shot"), ("JoLA", "jola"), ("majority label", "majority")):
            value = r.get(key) if key == "majority" else r.get(f"{key}.likelihood_acc", r.get(f"{key}.rouge_l"))
            if value is not None:
                bars.append({"task": task, "method": method, "accuracy": value})
    written: list[Path] = []
    _write(plots.method_bars(bars, title="zero-shot vs JoLA (likelihood accuracy; E2E: ROUGE-L)"), out,
           "dev_tasks_bars", html, written)
    return written


def size_curve(runs: list[Path], out: Path, html: bool) -> list[Path]:
    rows = []
    for run in runs:
        r = json.loads((run / "results.json").read_text())
        for method, key in (("zero-shot", "zero_shot"), ("JoLA", "jola")):
            acc = r[key]["likelihood_acc"]
            rows.append({"method": method, "n_train": r["n_train"], "accuracy": acc,
                         "stderr": r[key].get("likelihood_acc_stderr")})
    written: list[Path] = []
    _write(plots.accuracy_vs_size(rows, title="ARC-Easy likelihood accuracy vs training examples"), out,
           "accuracy_vs_size", html, written)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo_out", help="a run folder (edits + gate log)")
    ap.add_argument("--out", default="docs/figures")
    ap.add_argument("--selectors", nargs="*", default=[])
    ap.add_argument("--select-epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dev-summary", default=None)
    ap.add_argument("--size-runs", nargs="*", default=[])
    ap.add_argument("--html", action="store_true", help="also write the HTML files")
    args = ap.parse_args(argv)
    out, run = Path(args.out), Path(args.run)
    written, k = run_figures(run, out, args.html)
    if args.selectors:
        written += selection_figures(run, out, args.selectors, k, args.select_epochs, args.html, args.seed)
    if args.dev_summary:
        written += dev_bars(Path(args.dev_summary), out, args.html)
    if args.size_runs:
        written += size_curve([Path(p) for p in args.size_runs], out, args.html)
    for p in written:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
