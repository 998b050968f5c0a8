"""Zero-shot, every baseline and JoLA on the dev tasks, on the same 200 training examples.

    python -m analysis.main_table --tasks ARC-Easy boolq openbookqa mmlu_pro/biology --seeds 42 43 44 \\
        --reuse analysis/results/compare_selection_k14 --out analysis/results/main_table

Each (task, method, seed) run trains on the task's training sample (seed-independent data; the
seed drives initialisation, data order and gate noise) with the trainer and budget of
:mod:`analysis.common` and is scored by option-text likelihood on the fixed test sample.
Writes ``runs/*.json`` (one per run, re-used on a re-run), ``main_table.csv``/``.md`` (mean ±
sd over seeds) and ``main_table.html`` (bars per task).
"""

from __future__ import annotations

import argparse
import glob
import re
from collections.abc import Sequence
from pathlib import Path

from analysis.common import (
    CONTROLS,
    CONTROLS_NOTE,
    Study,
    commonest_answer_share,
    fmt,
    mean_sd,
    run_file_stem,
    run_method,
    run_study,
    write_table,
)

METHODS = ["zero_shot", "iti", "bitfit", "red", "loreft", "lora", "lofit", "jola"]
COLLAPSED = 0.9  # a run giving one answer to this share of the test questions or more is flagged under the table
LABELS = {"zero_shot": "zero-shot", "iti": "ITI steering", "bitfit": "BitFit", "red": "RED", "loreft": "LoReFT",
          "lora": "LoRA (r=8, W_Q W_V)", "lofit": "LoFiT (2 stages)", "jola": "JoLA"}


def main(argv: list[str] | None = None) -> int:
    return run_study("main_table", __doc__, argv, _run,
                     add_args=lambda ap: ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS),
                     cached_only_help="train nothing: tabulate the runs already stored in --out/runs (missing ones: "
                                      "n/a)")


def _run(study: Study) -> None:
    args, out = study.args, study.out
    runs = []
    for task in args.tasks:
        setup = study.setup(task)
        for seed in args.seeds:
            for method in args.methods:
                if method == "zero_shot" and seed != args.seeds[0]:
                    continue  # deterministic: one run per task
                key = study.key(task, method, seed=seed)
                if method == "zero_shot":  # any seed's stored zero-shot run will do (e.g. `--seeds 43` alone)
                    key = stored_zero_shot_key(key, [out, *args.reuse]) or key
                r = study.run(key, lambda: run_method(study.model, setup, method, seed=seed, epochs=args.epochs,
                                                      progress=study.progress), setup=setup)
                if r is None:
                    continue
                r["controls"] = setup.controls  # from the task's data, for stored runs too
                runs.append(r)
                summarise(runs, out, study.cmd, study.seconds(), args)


def stored_zero_shot_key(key: str, folders: Sequence[str | Path]) -> str | None:
    """The key of a zero-shot run stored in one of ``folders`` that differs from ``key`` only in its seed.

    Zero-shot scoring trains nothing, so every seed gives the same result; reusing a stored run saves
    the minutes a new one takes.

    Example:
        >>> stored_zero_shot_key("ARC-Easy.zero_shot.s43.e3.n200.t200", []) is None
        True
    """
    m = re.fullmatch(r"(.+)\.s(\d+)\.(e\d+\.n\d+\.t\w+)", key)
    if m is None:
        raise ValueError(f"not a run key with a seed: {key!r}")
    head, tail = m.group(1), m.group(3)
    stored = run_file_stem(head)
    for folder in folders:
        for path in sorted((Path(folder) / "runs").glob(f"{glob.escape(stored)}.s*.{tail}.json")):
            seed = path.name[len(stored) + 2:-len(f".{tail}.json")]
            if seed.isdigit():
                return f"{head}.s{seed}.{tail}"
    return None


def summarise(runs: list[dict], out: Path, cmd: str, seconds: float, args: argparse.Namespace) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    share = {id(r): commonest_answer_share(r) for r in runs}  # None for runs that kept no predictions
    rows, cells, norm = [], {}, {}
    for t in tasks:
        for m in methods:
            rs = [r for r in runs if r["task"] == t and r["method"] == m]
            if not rs:
                continue
            mean, sd, n = mean_sd([r["accuracy"] for r in rs])
            norm[t, m] = mean_sd([r.get("likelihood_acc_norm") for r in rs])
            cells[t, m] = (mean, sd, n)
            rows.append({"task": t, "method": m, "accuracy_mean": mean, "accuracy_sd": sd, "n_seeds": n,
                         "acc_norm_mean": norm[t, m][0], "trainable_params": rs[0].get("trainable_params", 0),
                         "n_test": rs[0]["n"], **{k: (rs[0].get("controls") or {}).get(k) for k in CONTROLS},
                         "train_seconds_mean": mean_sd([r["train_seconds"] for r in rs])[0],
                         "commonest_answer_share": mean_sd([share[id(r)] for r in rs])[0],
                         "seeds": [r["seed"] for r in rs]})
    # the mean runs over the tasks on which every method of the table finished, so rows compare
    complete = [t for t in tasks if all((t, m) in cells for m in methods)]
    mean_label = "tasks" if complete == tasks else (", ".join(complete) or "no task (none complete)")
    params = {m: next(r["trainable_params"] for r in rows if r["method"] == m) for m in methods}
    controls = {k: [next((r[k] for r in rows if r["task"] == t), None) for t in tasks] for k in CONTROLS}

    def table(cell: dict) -> list[str]:
        out_lines = ["| method | params | " + " | ".join(tasks) + f" | mean over {mean_label} |",
                     "|---|---|" + "---|" * (len(tasks) + 1)]
        for m in methods:
            accs = [cell.get((t, m), (None, None, 0)) for t in tasks]
            have = [cell[t, m][0] for t in complete if cell[t, m][0] is not None]
            mean_all = sum(have) / len(have) if complete and len(have) == len(complete) else None
            out_lines.append(f"| {LABELS[m]} | {params[m]:,} | " + " | ".join(
                f"{fmt(a, s)}" + (f" (n={n})" if n > 1 else "") for a, s, n in accs) + f" | {fmt(mean_all)} |")
        return out_lines + [f"| {CONTROLS[k]} | 0 | " + " | ".join(fmt(x) for x in xs) + " | |"
                            for k, xs in controls.items()]

    lines = [f"Command: `{cmd}`", "",
             f"Bundled SmolLM2-135M-Instruct; {args.train_size} training / {args.valid_size} validation examples, "
             f"{args.epochs} epochs, test sample {args.test_size} per task; option-text likelihood accuracy, "
             f"mean ± sd over seeds {args.seeds} (n = seeds that finished). Run time of the tabulated runs "
             f"{sum(r.get('seconds') or 0 for r in runs) / 60:.0f} min (each run's in runs/*.json); this "
             f"invocation {seconds / 60:.0f} min.", "", *table(cells), "", CONTROLS_NOTE]
    stored = [(r, x) for r in runs if (x := share[id(r)]) is not None]
    if stored:
        flagged = [f"{r['task']} {LABELS[r['method']]} seed {r['seed']} ({x:.0%})" for r, x in stored if x >= COLLAPSED]
        lines += ["", f"One answer to {COLLAPSED:.0%} or more of the test questions (of the {len(stored)} runs "
                  f"that stored predictions): " + ("; ".join(flagged) if flagged else "none") + "."]
    lines += rerun_text(runs)
    lines += ["", "Length-normalised option likelihood (lm-eval-harness `acc_norm`: each option's summed "
              "log-probability divided by its length in characters), the same runs:", "", *table(norm)]
    write_table(out, "main_table", rows, "\n".join(lines) + "\n")
    try:
        from jola_lens import plots

        fig = plots.method_bars([{"task": r["task"], "method": LABELS[r["method"]], "accuracy": r["accuracy"],
                                  "stderr": r.get("likelihood_acc_stderr")} for r in runs if r["accuracy"] is not None],
                                title="Accuracy per task and method (error bars: test-sample SE, or SE over seeds)")
        plots.save_html(fig, out / "main_table.html")
    except Exception as e:  # the tables matter more than the figure
        print(f"[analysis] main_table.html not written: {e}")


def rerun_text(runs: Sequence[dict]) -> list[str]:
    """A line on the runs re-run (``--rerun-without-rows``) and whether they gave the stored accuracy again.

    Example:
        >>> rerun_text([{"accuracy": 0.6, "rerun_of": {"accuracy": 0.6}}, {"accuracy": 0.5}])
        ['', 'Re-run to keep per-question predictions: 1 run; 1 gave the replaced accuracy exactly.']
    """
    pairs = [(r["accuracy"], r["rerun_of"].get("accuracy")) for r in runs if r.get("rerun_of")]
    if not pairs:
        return []
    same = sum(1 for a, b in pairs if a is not None and b is not None and abs(a - b) < 1e-9)
    diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
    worst = f"; largest change {max(diffs):.3f}" if same < len(pairs) and diffs else ""
    return ["", f"Re-run to keep per-question predictions: {len(pairs)} run{'s' * (len(pairs) != 1)}; {same} gave "
            f"the replaced accuracy exactly{worst}."]


if __name__ == "__main__":
    raise SystemExit(main())
