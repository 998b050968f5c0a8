"""Zero-shot vs JoLA on the development tasks, with the controls, as one Markdown table.

    python -m analysis.dev_tasks --tasks ARC-Easy boolq openbookqa e2e_nlg --out analysis/results/dev_tasks

Each task runs ``jola_lens.experiment.run_experiment`` (the same code as ``jola-lens train``) and
writes its own folder (results.json, predictions, edits, gate log); the summary goes to
``summary.md`` and ``summary.csv``. ``--cached-only`` runs nothing: it re-tabulates the tasks'
stored ``results.json`` (the controls computed from the task data, no model loaded), keeping the
stored table's ``Command:`` line and naming the re-tabulating command under it. ``--config`` picks
a named configuration:

* ``demo``: the demo's settings (cloze prompt, option-text answers, ``jola_lens.recipes.DEMO_DEFAULTS``:
  paper-form penalty with a constant lambda, gate lr 0.2, 3 epochs);
* ``paper``: the JoLA code's settings (Alpaca prompt, label answers, jola_code penalty with the
  expon schedule, lr 5e-3, up to ``--epochs`` epochs, early stopping with patience 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

from analysis.common import CONTROLS, CONTROLS_NOTE, Study, run_study, task_controls
from jola_lens.config import JoLAConfig
from jola_lens.experiment import TaskSpec, load_task_data, run_experiment
from jola_lens.recipes import DEMO_DEFAULTS, get_recipe
from jola_lens.train import TrainConfig

CONFIGS = {
    "demo": (dict(style="cloze", target="choice_text"), DEMO_DEFAULTS),
    "paper": (dict(style="alpaca", target="label"),
              dict(lr=5e-3, penalty="jola_code", gate_schedule="expon", warmup_steps=50, patience=2)),
}


METRICS = ("likelihood_acc", "likelihood_acc_norm", "generation_acc", "bleu", "rouge_l")


def main(argv: list[str] | None = None) -> int:
    def add_args(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--tasks", nargs="+", default=["demo", "boolq", "openbookqa", "e2e_nlg"])
        ap.add_argument("--config", choices=sorted(CONFIGS), default="demo")
        ap.add_argument("--data-root", default=None)
        ap.add_argument("--epochs", type=int, default=get_recipe("demo").train["epochs"])
        ap.add_argument("--test-size", type=int, default=300)
        ap.add_argument("--seed", type=int, default=42)
        ap.add_argument("--no-generation", action="store_true")

    return run_study("dev_tasks", __doc__, argv, _run, add_args=add_args, common=False,
                     cached_only_help="run nothing: re-tabulate the tasks' stored results.json under --out/<config> "
                                      "(tasks without one are left out)")


def _run(study: Study) -> None:
    args = study.args
    spec_kw, train_kw = CONFIGS[args.config]
    out = study.out / args.config
    before = _stored_summary(out)
    rows = []
    for task in args.tasks:
        t0 = time.time()
        folder = out / task.replace("/", "_")
        if study.cached_only:
            if not (folder / "results.json").is_file():
                print(f"[analysis] {task}: no stored {folder / 'results.json'}: left out")
                continue
            r = json.loads((folder / "results.json").read_text())
            spec = TaskSpec.from_dict(r["spec"])
            seconds = before.get(r["task"], {}).get("seconds")
            if seconds is None:  # the stored runs' own times (the summary's also counts loading the data)
                seconds = round(sum(r.get(w, {}).get("seconds") or 0 for w in ("zero_shot", "jola"))
                                + (r.get("train_seconds") or 0))
        else:
            spec = TaskSpec(task=task, data_root=args.data_root, test_size=args.test_size, seed=args.seed, **spec_kw)
            tc = TrainConfig(**{**train_kw, "epochs": args.epochs}, seed=args.seed)
            r = run_experiment(study.model, spec, jola_config=JoLAConfig(), train_config=tc, out_dir=folder,
                               generation=not args.no_generation).results
            seconds = round(time.time() - t0)
        controls = task_controls(load_task_data(spec))
        rows.append(summary_row(r, args.config, controls, seconds))
        head = [f"Command: `{study.cmd}`"]
        if study.cached_only:
            head = [before["_command"], f"Re-tabulated from the stored runs: `{study.cmd}`"] if "_command" in before \
                else [f"Command: `{study.cmd}`"]
        write_summary(rows, out, head)


def summary_row(r: dict[str, Any], config: str, controls: dict[str, float | None], seconds: int) -> dict[str, Any]:
    """One task's row of the summary from its ``results.json`` and its controls."""
    row = {"task": r["task"], "config": config, "n_train": r["n_train"], "n_test": r["n_test"], **controls,
           "seconds": seconds}
    for which in ("zero_shot", "jola"):
        for k in METRICS:
            if k in r[which]:
                row[f"{which}.{k}"] = r[which][k]
    row["open_additive"] = r["open_gates"]["additive"]
    row["open_multiplicative"] = r["open_gates"]["multiplicative"]
    return row


def _stored_summary(out: Path) -> dict[str, Any]:
    """The stored summary's rows by task, and its ``Command:`` line under ``_command``."""
    found: dict[str, Any] = {}
    if (out / "summary.json").is_file():
        found.update({row["task"]: row for row in json.loads((out / "summary.json").read_text())})
    if (out / "summary.md").is_file():
        first = (out / "summary.md").read_text().splitlines()[:1]
        if first and first[0].startswith("Command: "):
            found["_command"] = first[0]
    return found


def write_summary(rows: list[dict], out: Path, head: list[str]) -> None:
    """``summary.csv``, ``summary.json`` and ``summary.md`` (``head``: the lines above the table)."""
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k.count("."), k))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [*head, "",
             f"| task | metric | {' | '.join(CONTROLS.values())} | zero-shot | JoLA | open gates (a / m of 270) "
             "| seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for metric in METRICS:
            if f"jola.{metric}" not in r:
                continue
            ctl = " | ".join(f"{r[k]:.3f}" if r.get(k) is not None and "acc" in metric else "" for k in CONTROLS)
            lines.append(f"| {r['task']} | {metric} | {ctl} | {r[f'zero_shot.{metric}']:.3f} | "
                         f"{r[f'jola.{metric}']:.3f} | {r['open_additive']} / {r['open_multiplicative']} | "
                         f"{r['seconds']} |")
    if any(r.get(k) is not None for r in rows for k in CONTROLS):
        lines += ["", CONTROLS_NOTE]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
