"""Zero-shot vs JoLA on the development tasks, with the controls, as one Markdown table.

    python -m analysis.dev_tasks --tasks ARC-Easy boolq openbookqa e2e_nlg --out analysis/results/dev_tasks

Each task runs ``jola_lens.experiment.run_experiment`` (the same code as ``jola-lens train``) and
writes its own folder (results.json, predictions, edits, gate log); the summary goes to
``summary.md`` and ``summary.csv``. ``--config`` picks a named configuration:

* ``demo``: the demo's settings (cloze prompt, option-text answers, ``jola_lens.cli.DEMO_DEFAULTS``:
  paper-form penalty with a constant lambda, gate lr 0.2, 3 epochs);
* ``paper``: the JoLA code's settings (Alpaca prompt, label answers, jola_code penalty with the
  expon schedule, lr 5e-3, up to ``--epochs`` epochs, early stopping with patience 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from jola_lens.cli import DEMO_DEFAULTS
from jola_lens.config import JoLAConfig
from jola_lens.experiment import TaskSpec, run_experiment
from jola_lens.loading import load_model, set_offline_env
from jola_lens.train import TrainConfig

CONFIGS = {
    "demo": (dict(style="cloze", target="choice_text"), DEMO_DEFAULTS),
    "paper": (dict(style="alpaca", target="label"),
              dict(lr=5e-3, penalty="jola_code", gate_schedule="expon", warmup_steps=50, patience=2)),
}


def main(argv: list[str] | None = None) -> int:
    set_offline_env()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["demo", "boolq", "openbookqa", "e2e_nlg"])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--test-size", type=int, default=300)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default="analysis/results/dev_tasks")
    ap.add_argument("--no-generation", action="store_true")
    args = ap.parse_args(argv)

    spec_kw, train_kw = CONFIGS[args.config]
    model = load_model()
    out = Path(args.out) / args.config
    rows = []
    for task in args.tasks:
        t0 = time.time()
        spec = TaskSpec(task=task, data_root=args.data_root, test_size=args.test_size, seed=args.seed, **spec_kw)
        tc = TrainConfig(**{**train_kw, "epochs": args.epochs}, seed=args.seed)
        res = run_experiment(model, spec, jola_config=JoLAConfig(), train_config=tc, out_dir=out / task.replace("/", "_"),
                             generation=not args.no_generation)
        r = res.results
        row = {"task": r["task"], "config": args.config, "n_train": r["n_train"], "n_test": r["n_test"],
               "majority": r.get("majority_label_acc"), "seconds": round(time.time() - t0)}
        for which in ("zero_shot", "jola"):
            for k in ("likelihood_acc", "likelihood_acc_norm", "generation_acc", "bleu", "rouge_l"):
                if k in r[which]:
                    row[f"{which}.{k}"] = r[which][k]
        row["open_additive"] = r["open_gates"]["additive"]
        row["open_multiplicative"] = r["open_gates"]["multiplicative"]
        rows.append(row)
        write_summary(rows, out, argv_text=" ".join(["python -m analysis.dev_tasks", *(sys.argv[1:] if argv is None else argv)]))
    return 0


def write_summary(rows: list[dict], out: Path, argv_text: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k.count("."), k))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [f"Command: `{argv_text}`", "",
             "| task | metric | majority | zero-shot | JoLA | open gates (a / m of 270) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for metric in ("likelihood_acc", "likelihood_acc_norm", "generation_acc", "bleu", "rouge_l"):
            if f"jola.{metric}" not in r:
                continue
            maj = f"{r['majority']:.3f}" if r.get("majority") is not None and "acc" in metric else ""
            lines.append(f"| {r['task']} | {metric} | {maj} | {r[f'zero_shot.{metric}']:.3f} | "
                         f"{r[f'jola.{metric}']:.3f} | {r['open_additive']} / {r['open_multiplicative']} | {r['seconds']} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
