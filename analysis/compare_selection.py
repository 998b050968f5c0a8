"""Where to edit: every head selector against JoLA's own localisation, at the same K.

    python -m analysis.compare_selection --tasks ARC-Easy --seeds 42 43 44 --epochs 3 --select-epochs 1 \\
        --reuse analysis/results/main_table --out analysis/results/compare_selection

For each task:

1. JoLA is trained (first seed; or its run is re-used from ``--reuse``, e.g. the main table's),
   and K = its number of open heads. JoLA's mask is its K heads with the highest
   max(P(g_a open), P(g_m open)): the open heads. ``--k`` sets a smaller (or larger) K; JoLA's
   mask is then its top K by that P(open).
2. Every selector (``--selectors``) picks K heads, once per seed (trained selectors get
   ``--select-epochs`` epochs on the same 200 examples; the model stays frozen).
3. Overlap with JoLA's mask: Jaccard, precision@K (|S and J| / K), Spearman correlation of the
   selector's head scores with JoLA's P(open); layer histograms; agreement of each selector with
   itself across seeds (mean pairwise Jaccard).
4. Downstream, for each seed in ``--downstream-seeds`` (default: the first seed): plain additive +
   multiplicative edits trained on each mask with no gates (:func:`jola_lens.selection.edit_on_mask`),
   JoLA's mask included (``edit:jola``), all with the same budget and that seed, each selector's mask
   the one it picked with that seed; JoLA's gated result is reported beside them. For a seed other
   than the first, JoLA is trained again with that seed and its mask is its top K by P(open) (K stays
   the first seed's), so its localisation is re-drawn too; JoLA's row of the overlap table then shows
   its own agreement across seeds. The downstream table gives each seed and the mean +- sd over seeds.

Writes ``runs/`` (cached), ``selection.json`` (masks), ``overlap.csv/.md``, ``downstream.csv/.md``,
and ``selection_grid.html``, ``selection_jaccard.html``, ``layer_histogram.html``. ``--cached-only``
trains and selects nothing: a task without its stored JoLA run is skipped, a selector without every
seed's stored selection and a downstream run not stored are left out.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch

from analysis.common import Study, fmt, mean_sd, run_method, run_study, timing_text, write_table
from jola_lens.plots import jaccard
from jola_lens.selection import select, top_k_mask

SELECTORS = ["lofit", "dsp", "pass", "smp", "iti", "random"]
TRAINED = {"lofit", "dsp", "pass"}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten().double()
        order = torch.argsort(x)
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=torch.double)
        for v in torch.unique(x):  # average the ranks of ties
            tie = x == v
            if int(tie.sum()) > 1:
                r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    def add_args(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--selectors", nargs="+", default=SELECTORS, choices=SELECTORS + ["all"])
        ap.add_argument("--select-epochs", type=int, default=1)
        ap.add_argument("--k", type=int, default=None,
                        help="heads per mask (default: JoLA's open-head count); JoLA's mask is then its top K by "
                             "P(open)")
        ap.add_argument("--no-downstream", action="store_true")
        ap.add_argument("--downstream-seeds", nargs="+", type=int, default=None,
                        help="seeds (a subset of --seeds) to train the downstream edits with; default: the first seed")

    def check(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
        if missing := [s for s in args.downstream_seeds or [] if s not in args.seeds]:
            ap.error(f"--downstream-seeds {missing} are not in --seeds {args.seeds}: the selectors' masks exist only "
                     "for --seeds")

    return run_study("compare_selection", __doc__, argv, _run, add_args=add_args, check=check, seeds=(42, 43, 44),
                     cached_only_help="train and select nothing: tabulate the runs already stored in --out/runs "
                                      "(missing ones are left out)")


def _run(study: Study) -> None:
    args, out = study.args, study.out
    down_seeds = args.downstream_seeds or args.seeds[:1]
    overlap_rows: list[dict] = []
    down_rows: list[dict] = []
    masks_json: dict[str, Any] = {}
    for task in args.tasks:
        setup = study.setup(task)
        s0 = args.seeds[0]

        def jola_run(seed: int) -> dict[str, Any] | None:
            return study.run(study.key(task, "jola", seed=seed), lambda: run_method(
                study.model, setup, "jola", seed=seed, epochs=args.epochs, progress=study.progress), setup=setup,
                rerun=False)

        jkey = study.key(task, "jola", seed=s0)
        jola = jola_run(s0)
        if jola is None:
            print(f"[analysis] {task}: no stored JoLA run {jkey} (--cached-only): task skipped")
            continue
        jscores = torch.tensor(jola["prob_open"]) if jola.get("prob_open") else None
        open_mask = torch.tensor(jola["open_mask"])
        n_layers, n_heads = open_mask.shape  # the model's heads, read off JoLA's stored mask
        n_open = int(open_mask.sum())
        k = args.k or max(1, n_open)
        if k > n_layers * n_heads:
            raise ValueError(f"--k {k} is more than the model's {n_layers * n_heads} heads")
        by_rank = bool(args.k) or not n_open  # JoLA's mask from its P(open) ranking, not its open gates
        if by_rank and jscores is None:
            raise ValueError(f"JoLA run {jkey} has no P(open) to rank heads by; leave out --k")
        # JoLA's ranking: max over the two gates' P(open), stored per run as the additive P(open) and mask
        jmask = top_k_mask(jscores, k) if by_rank else open_mask.bool()
        masks: dict[str, dict[int, torch.Tensor]] = {"jola": {s0: jmask}}
        scores: dict[str, dict[int, torch.Tensor]] = {"jola": {s0: jscores}}
        for name in args.selectors:
            stored = {}
            for seed in args.seeds:
                key = f"select.{task}.{name}.k{k}.s{seed}.se{args.select_epochs}.n{args.train_size}"

                def run_select(name: str = name, seed: int = seed) -> dict[str, Any]:
                    opts = {"epochs": args.select_epochs} if name in TRAINED else {}
                    r = select(name, study.model, setup.train, k=k, seed=seed, **opts)
                    return {"method": name, "seed": seed, "k": k, "mask": r.mask.int().tolist(),
                            "scores": r.scores.float().tolist(), "seconds": r.record["seconds"],
                            "steps": r.record.get("steps"), "accuracy": None}

                stored[seed] = study.run(key, run_select, reuse=False, rerun=False)
            if any(r is None for r in stored.values()):
                print(f"[analysis] {task}: selector {name} has no stored selection for every seed: left out")
                continue
            masks[name] = {seed: torch.tensor(r["mask"]).bool() for seed, r in stored.items()}
            scores[name] = {seed: torch.tensor(r["scores"]).float() for seed, r in stored.items()}
        jola_runs = {s0: jola}
        if not args.no_downstream:  # JoLA re-trained with each further downstream seed: its own top K there
            for seed in down_seeds:
                if seed != s0 and (run := jola_run(seed)) is not None:
                    jola_runs[seed] = run
                    p_open = torch.tensor(run["prob_open"])
                    masks["jola"][seed], scores["jola"][seed] = top_k_mask(p_open, k), p_open
        masks_json[task] = {"k": k, "jola_run": jkey, "shape": [n_layers, n_heads],
                            "masks": {n: {str(s): torch.nonzero(m).tolist() for s, m in d.items()}
                                      for n, d in masks.items()}}
        for name, by_seed in masks.items():
            seeds = sorted(by_seed)
            # against JoLA's first-seed mask; JoLA's own row: its other seeds against its first
            vs = [s for s in seeds if s != s0] if name == "jola" and len(seeds) > 1 else seeds
            jac = [jaccard(by_seed[s], jmask) for s in vs]
            prec = [int((by_seed[s] & jmask).sum()) / k for s in vs]
            rho = [spearman(scores[name][s], jscores) for s in vs] if jscores is not None else []
            agree = [jaccard(by_seed[a], by_seed[b]) for a, b in itertools.combinations(seeds, 2)]
            # heads per layer, averaged over the seeds' masks
            layers = [round(c, 3) for c in (sum(by_seed[s].sum(1).float() for s in seeds) / len(seeds)).tolist()]
            overlap_rows.append({
                "task": task, "selector": name, "k": k, "seeds": seeds,
                "jaccard_with_jola": mean_sd(jac)[0], "jaccard_sd": mean_sd(jac)[1],
                "precision_at_k": mean_sd(prec)[0], "spearman_with_jola": mean_sd(rho)[0] if rho else None,
                "seed_agreement_jaccard": mean_sd(agree)[0] if agree else None,
                "layer_histogram": layers,
                "mean_layer": sum(i * c for i, c in enumerate(layers)) / max(sum(layers), 1),
            })
        if not args.no_downstream:
            for seed in down_seeds:
                if seed not in jola_runs:
                    continue  # --cached-only without JoLA's run of this seed: no mask to edit on
                gated = jola_runs[seed]
                down_rows.append({"task": task, "selector": "jola (gated, as trained)", "seed": seed,
                                  "k": int(torch.tensor(gated["open_mask"]).sum()), **_acc(gated)})
                for name in ["jola", *(n for n in args.selectors if n in masks)]:
                    key = study.key(task, f"edit-{name}", k=k, seed=seed)
                    r = study.run(key, lambda name=name, seed=seed: run_method(
                        study.model, setup, f"edit:{name}", seed=seed, epochs=args.epochs, mask=masks[name][seed],
                        progress=study.progress), setup=setup, reuse=False)
                    # (the selection runs and JoLA's own run are never re-run: the masks above stay the stored ones)
                    if r is None:
                        continue
                    down_rows.append({"task": task, "selector": name, "seed": seed, "k": k, **_acc(r)})
                    _write(out, overlap_rows, down_rows, masks_json, study.cmd, study.seconds(), args, n_layers)
        _write(out, overlap_rows, down_rows, masks_json, study.cmd, study.seconds(), args, n_layers)
        _figures(out, masks, k, task, n_layers)


def _acc(r: dict[str, Any]) -> dict[str, Any]:
    return {"accuracy": r.get("accuracy"), "stderr": r.get("likelihood_acc_stderr"),
            "acc_norm": r.get("likelihood_acc_norm"), "n_test": r.get("n"),
            "train_seconds": round(r.get("train_seconds", 0))}


def _write(out: Path, overlap: list[dict], down: list[dict], masks_json: dict, cmd: str, seconds: float,
           args: argparse.Namespace, n_layers: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps(masks_json, indent=1))
    head = [f"Command: `{cmd}`", "",
            f"Bundled SmolLM2-135M-Instruct ({n_layers} layers x 9 heads); {args.train_size} training examples; "
            f"trained selectors ran {args.select_epochs} epoch(s); seeds {args.seeds}; "
            f"{timing_text(out, seconds)}.", ""]
    lines = head + ["| task | selector | K | Jaccard with JoLA | precision@K | Spearman vs JoLA P(open) | "
                    "seed agreement (Jaccard) | mean layer (all seeds) |", "|---|---|---|---|---|---|---|---|"]
    for r in overlap:
        lines.append(f"| {r['task']} | {r['selector']} | {r['k']} | {fmt(r['jaccard_with_jola'], r['jaccard_sd'])} | "
                     f"{fmt(r['precision_at_k'])} | {fmt(r['spearman_with_jola'])} | "
                     f"{fmt(r['seed_agreement_jaccard'])} | {r['mean_layer']:.1f} |")
    write_table(out, "overlap", overlap, "\n".join(lines) + "\n")
    if down:
        seeds = sorted({r["seed"] for r in down})
        cols = seeds if len(seeds) > 1 else []  # one seed: its accuracy is the accuracy column
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in down:
            groups.setdefault((r["task"], r["selector"]), []).append(r)
        lines = head + [f"Downstream: additive + multiplicative edits on the K selected heads, no gates, "
                        f"{args.epochs} epochs, seeds {seeds} (each selector's mask from the same seed); test "
                        f"sample {args.test_size}; option-text likelihood accuracy. One seed: ± test-sample "
                        "standard error; several: mean ± sd over seeds.", "",
                        "| task | heads chosen by | K | " + "".join(f"seed {s} | " for s in cols)
                        + "accuracy | acc (length-normalised) | train s |",
                        "|---|---|---|" + "---|" * len(cols) + "---|---|---|"]
        for (task, sel), rs in groups.items():
            by = {r["seed"]: r for r in rs}
            accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
            acc = fmt(rs[0]["accuracy"], rs[0]["stderr"]) if len(rs) == 1 else fmt(*mean_sd(accs)[:2])
            norms = [r["acc_norm"] for r in rs if r["acc_norm"] is not None]
            ks = [str(r["k"]) for r in rs]  # one K per seed where they differ (JoLA's gated runs)
            ks = ks[0] if len(set(ks)) == 1 else "/".join(ks)
            lines.append(f"| {task} | {sel} | {ks} | "
                         + "".join((fmt(by[s]["accuracy"]) if s in by else "-") + " | " for s in cols)
                         + f"{acc} | {fmt(mean_sd(norms)[0]) if norms else '-'} | "
                         f"{round(sum(r['train_seconds'] for r in rs) / len(rs))} |")
        write_table(out, "downstream", down, "\n".join(lines) + "\n")


def _figures(out: Path, masks: dict[str, dict[int, torch.Tensor]], k: int, task: str, n_layers: int) -> None:
    try:
        import plotly.graph_objects as go

        from jola_lens import plots

        first = {n: d[sorted(d)[0]] for n, d in masks.items()}
        tag = task.replace("/", "_")
        plots.save_html(plots.selection_grid(first, title=f"{task}: heads chosen at K = {k}"),
                        out / f"selection_grid_{tag}.html")
        plots.save_html(plots.jaccard_matrix(first, title=f"{task}: Jaccard overlap, K = {k}"),
                        out / f"selection_jaccard_{tag}.html")
        fig = go.Figure([go.Bar(x=list(range(n_layers)), y=m.sum(1).tolist(), name=n) for n, m in first.items()])
        fig.update_layout(barmode="group", title_text=f"{task}: selected heads per layer (K = {k})",
                          xaxis_title="layer", yaxis_title="heads selected", width=1000, height=420)
        plots.save_html(fig, out / f"layer_histogram_{tag}.html")
    except Exception as e:
        print(f"[analysis] figures not written: {e}")


if __name__ == "__main__":
    raise SystemExit(main())
