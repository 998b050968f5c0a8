"""The paper's ablations of JoLA, each a change of one setting against the default run.

    python -m analysis.ablations --tasks ARC-Easy --seeds 42 --epochs 3 \\
        --reuse analysis/results/main_table --out analysis/results/ablations

Variants (``--variants``; ``default`` is JoLA as in the main table: two Hard-Concrete gates per
head on ``hook_z``, additive + multiplicative edits, the demo's penalty and gate learning rate):

* ``no_gate``: the same edits on every head with no gates (``gate_mode="none"``);
* ``shared_gate``: one gate per head for both edits;
* ``additive_only`` / ``multiplicative_only``: one kind of edit;
* ``mlp_only`` / ``attn_and_mlp``: the edit on each layer's MLP output instead of / as well as the heads;
* ``penalty_jola_code_expon``: the released code's penalty and exponential lambda schedule;
* ``penalty_paper_linear``: the paper's expected-L0 penalty with a linear lambda schedule;
* ``no_penalty``: gates trained with no sparsity pressure.

Writes ``runs/``, ``ablations.csv/.md`` and ``ablations.html``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from analysis.common import Study, commonest_answer_share, fmt, mean_sd, run_method, run_study, timing_text, write_table
from jola_lens.config import JoLAConfig

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "no_gate": ({"gate_mode": "none"}, {"penalty": "none"}),
    "shared_gate": ({"gate_mode": "shared"}, {}),
    "additive_only": ({"edit": "additive"}, {}),
    "multiplicative_only": ({"edit": "multiplicative"}, {}),
    "mlp_only": ({"sites": ("mlp",)}, {}),
    "attn_and_mlp": ({"sites": ("attn", "mlp")}, {}),
    "penalty_jola_code_expon": ({}, {"penalty": "jola_code", "gate_schedule": "expon", "gate_lambda": None}),
    "penalty_paper_linear": ({}, {"penalty": "paper", "gate_schedule": "linear"}),
    "no_penalty": ({}, {"penalty": "none"}),
}


def main(argv: list[str] | None = None) -> int:
    return run_study("ablations", __doc__, argv, _run, add_args=lambda ap: ap.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS)))


def _run(study: Study) -> None:
    args = study.args
    runs = []
    for task in args.tasks:
        setup = study.setup(task)
        for seed in args.seeds:
            for variant in args.variants:
                jc, tc = VARIANTS[variant]
                key = study.key(task, "jola" if variant == "default" else f"ablation-{variant}", seed=seed)
                r = study.run(key, lambda: run_method(study.model, setup, "jola", seed=seed, epochs=args.epochs,
                                                      jola_config=JoLAConfig(**jc), train_overrides=tc,
                                                      progress=study.progress), setup=setup)
                if r is None:
                    continue
                r["variant"] = variant
                runs.append(r)
                _write(study.out, runs, study.cmd, study.seconds(), args)


def _open(runs: list[dict[str, Any]]) -> str:
    """Open gates at the end per site, one count per run (seed) joined by ``/``.

    Example:
        >>> _open([{"open_gates": {"attn": {"additive": 84, "multiplicative": 0}}},
        ...        {"open_gates": {"attn": {"additive": 79, "multiplicative": 2}}}])
        'attn: 84/79 a / 0/2 m'
    """
    sites = dict.fromkeys(site for r in runs for site, c in (r.get("open_gates") or {}).items() if isinstance(c, dict))
    parts = []
    for site in sites:
        counts = [(r.get("open_gates") or {}).get(site) or {} for r in runs]
        a = "/".join(str(c.get("additive", 0)) for c in counts)
        m = "/".join(str(c.get("multiplicative", 0)) for c in counts)
        parts.append(f"{site}: {a} a / {m} m")
    return "; ".join(parts)


def _write(out: Path, runs: list[dict], cmd: str, seconds: float, args: argparse.Namespace) -> None:
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        for variant in dict.fromkeys(r["variant"] for r in runs if r["task"] == task):
            rs = [r for r in runs if r["task"] == task and r["variant"] == variant]
            m, sd, n = mean_sd([r["accuracy"] for r in rs])
            rows.append({"task": task, "variant": variant, "accuracy_mean": m, "accuracy_sd": sd, "n_seeds": n,
                         "acc_norm_mean": mean_sd([r.get("likelihood_acc_norm") for r in rs])[0],
                         "stderr": rs[0].get("likelihood_acc_stderr"), "open_gates": _open(rs),
                         "trainable_params": rs[0].get("trainable_params"),
                         "commonest_answer_share": mean_sd([commonest_answer_share(r) for r in rs])[0],
                         "train_seconds": round(mean_sd([r["train_seconds"] for r in rs])[0] or 0)})
    lines = [f"Command: `{cmd}`", "",
             f"JoLA variants; {args.train_size} training examples, {args.epochs} epochs, test sample {args.test_size}; "
             f"seeds {args.seeds}; option-text likelihood accuracy (± test-sample SE for one seed; mean ± sd over "
             f"the n seeds stored otherwise); acc_norm: "
             f"the same runs scored by length-normalised likelihood (lm-eval-harness); gates open "
             f"at the end, one count per seed (a = additive, m = multiplicative; of 270 heads, or 30 MLP layers); "
             f"one answer: share of "
             f"the test questions given the run's most frequent prediction (blank: run stored without predictions); "
             f"{timing_text(out, seconds)}.", "",
             "| task | variant | accuracy | acc_norm | one answer | gates open | trainable params | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        err = r["accuracy_sd"] if r["n_seeds"] > 1 else r["stderr"]
        share = r["commonest_answer_share"]
        acc = fmt(r["accuracy_mean"], err) + (f" (n={r['n_seeds']})" if r["n_seeds"] > 1 else "")
        lines.append(f"| {r['task']} | {r['variant']} | {acc} | {fmt(r['acc_norm_mean'])} | "
                     f"{'' if share is None else f'{share:.0%}'} | {r['open_gates']} | "
                     f"{r['trainable_params']:,} | {r['train_seconds']} |")
    write_table(out, "ablations", rows, "\n".join(lines) + "\n")
    try:
        from jola_lens import plots

        fig = plots.method_bars([{"task": r["task"], "method": r["variant"], "accuracy": r["accuracy"],
                                  "stderr": r.get("likelihood_acc_stderr")} for r in runs if r["accuracy"] is not None],
                                title="JoLA ablations")
        plots.save_html(fig, out / "ablations.html")
    except Exception as e:
        print(f"[analysis] ablations.html not written: {e}")


if __name__ == "__main__":
    raise SystemExit(main())
