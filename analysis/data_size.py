"""JoLA vs LoRA vs LoFiT as the number of training examples grows.

    python -m analysis.data_size --tasks ARC-Easy --sizes 50 100 200 --methods jola lora lofit \\
        --reuse analysis/results/main_table --out analysis/results/data_size

Each (method, size, seed) run trains on a seeded sample of ``size`` training examples (the
validation and test samples do not change) and is scored as in :mod:`analysis.main_table`,
whose runs are re-used (``--reuse``) where the settings match. Writes ``runs/``,
``data_size.csv/.md`` and ``accuracy_vs_size.html``.

The bundled ARC-Easy sample has 200 training examples; for larger sizes its training set is grown
from the full ARC-Easy training split in ``../shared/data`` (:func:`analysis.common.extend_bundled_train`):
the bundled 200 plus a seeded, nested draw of the rest, with the bundled validation and test samples
unchanged, so every size is scored on the same 200 test questions.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from analysis.common import Study, fmt, mean_sd, run_method, run_study, timing_text, write_table

LABELS = {"jola": "JoLA", "lora": "LoRA", "lofit": "LoFiT", "zero_shot": "zero-shot"}


def main(argv: list[str] | None = None) -> int:
    def add_args(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--sizes", nargs="+", type=int, default=[50, 100, 200, 500, 1000])
        ap.add_argument("--methods", nargs="+", default=["jola", "lora", "lofit"], choices=sorted(LABELS))

    return run_study("data_size", __doc__, argv, _run, add_args=add_args)


def _run(study: Study) -> None:
    args = study.args
    runs = []
    for task in args.tasks:
        for size in sorted(args.sizes):
            setup = study.setup(task, train_size=size)
            if len(setup.td.train) < size:
                print(f"[analysis] {task} has {len(setup.td.train)} training examples: size {size} skipped")
                continue
            for seed in args.seeds:
                for method in args.methods:
                    key = study.key(task, method, seed=seed, n_train=size)
                    r = study.run(key, lambda: run_method(study.model, setup, method, seed=seed, epochs=args.epochs,
                                                          progress=study.progress), setup=setup)
                    if r is None:
                        continue
                    runs.append(r)
                    _write(study.out, runs, study.cmd, study.seconds(), args)


def _write(out: Path, runs: list[dict], cmd: str, seconds: float, args: argparse.Namespace) -> None:
    rows = []
    keys = list(dict.fromkeys((r["task"], r["method"], r["n_train"]) for r in runs))
    for task, method, n in keys:
        rs = [r for r in runs if (r["task"], r["method"], r["n_train"]) == (task, method, n)]
        m, sd, k = mean_sd([r["accuracy"] for r in rs])
        rows.append({"task": task, "method": method, "n_train": n, "accuracy_mean": m, "accuracy_sd": sd,
                     "n_seeds": k, "stderr": rs[0].get("likelihood_acc_stderr"),
                     "train_seconds": round(mean_sd([r["train_seconds"] for r in rs])[0] or 0)})
    sizes = sorted({r["n_train"] for r in rows})
    lines = [f"Command: `{cmd}`", "",
             f"{args.epochs} epochs at every size; test sample {args.test_size}; option-text likelihood accuracy "
             f"(± test-sample SE for one seed, sd over seeds otherwise); {timing_text(out, seconds)}.", "",
             "| task | method | " + " | ".join(f"n = {n}" for n in sizes) + " |", "|---|---|" + "---|" * len(sizes)]
    mixed = len({r["n_seeds"] for r in rows}) > 1  # say how many seeds each cell averages when they differ
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["task"] == task):
            cells = []
            for n in sizes:
                r = next((x for x in rows if (x["task"], x["method"], x["n_train"]) == (task, method, n)), None)
                cells.append("" if r is None else fmt(r["accuracy_mean"], r["accuracy_sd"] if r["n_seeds"] > 1
                                                       else r["stderr"]) + (f" (n={r['n_seeds']})" if mixed else ""))
            lines.append(f"| {task} | {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
        heads = [_heads_open([r for r in runs if (r["task"], r["method"], r["n_train"]) == (task, "jola", n)])
                 for n in sizes]
        if any(heads):
            lines.append(f"| {task} | JoLA heads open | " + " | ".join(heads) + " |")
    write_table(out, "data_size", rows, "\n".join(lines) + "\n")
    try:
        from jola_lens import plots

        plots.save_html(size_figure(runs, "Accuracy vs training examples (ARC-Easy sample)"),
                        out / "accuracy_vs_size.html")
    except Exception as e:
        print(f"[analysis] accuracy_vs_size.html not written: {e}")


def _heads_open(runs: list[dict]) -> str:
    """Heads with an open gate at the end of JoLA training, one count per run (seed) joined by ``/``.

    Example:
        >>> _heads_open([{"open_heads": 84}, {"open_heads": 79}, {}])
        '84/79'
    """
    return "/".join(str(r["open_heads"]) for r in runs if r.get("open_heads") is not None)


def size_figure(runs: list[dict], title: str) -> Any:
    """Accuracy against training examples (log axis), one line per method, from stored runs."""
    from jola_lens import plots

    return plots.accuracy_vs_size([{"method": LABELS.get(r["method"], r["method"]), "n_train": r["n_train"],
                                    "accuracy": r["accuracy"], "stderr": r.get("likelihood_acc_stderr")}
                                   for r in runs if r.get("accuracy") is not None], log_x=True, title=title)


if __name__ == "__main__":
    raise SystemExit(main())
