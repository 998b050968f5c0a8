"""Paired comparison of two stored runs on the same test questions.

    python -m analysis.paired --studies analysis/results/compare_selection_boolq_k14 \\
        analysis/results/compare_selection_openbookqa_k14 --a edit-jola.k14 --b edit-lofit.k14 edit-random.k14

Two methods scored on the same 200 test questions share most of their test-sample noise, so their
difference is much better known than two separate standard errors suggest. For every (task, seed,
settings) where both runs stored their per-question predictions (the ``rows`` of a run), each question
gets ``d = correct_A - correct_B`` averaged over the seeds; the reported difference is the mean of ``d``
over questions, its standard error ``sd(d) / sqrt(questions)``. Questions are the sampling unit: a
question counted under several seeds counts once. Runs without predictions are listed, not used. The
"A right, B wrong" and "B right, A wrong" columns count (question, seed) pairs. ``zero_shot`` trains
nothing, so its one stored run (whatever its seed) is paired with every seed of the other method.

A method is named as in the run files (``{task}.{method}.s{seed}.e{epochs}.n{train}.t{test}.json``):
``jola``, ``lofit``, ``edit-jola.k14``, ``ablation-no_penalty``, ... Writes ``paired.csv`` and
``paired.md`` into ``--out`` when it is given; prints the table either way, one row per settings
(epochs and sample sizes: a data-size study is compared size by size).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from analysis.common import fmt, write_table

# methods that train nothing and score the same with every seed: one stored run pairs with every seed of the other
SEEDLESS = frozenset({"zero_shot"})
_STEM = re.compile(r"^(?P<head>.+)\.s(?P<seed>\d+)\.(?P<tail>e\d+\.n\d+\.t[^.]+)$")


@dataclass(frozen=True)
class StoredRun:
    """One stored run: where it came from and its per-question correctness (``None`` without predictions)."""

    task: str
    method: str
    seed: int
    settings: str
    path: Path
    correct: dict[str, bool] | None


def load_runs(studies: Sequence[str | Path]) -> list[StoredRun]:
    """Every trained-and-scored run stored under ``study/runs/`` of each study folder.

    A run stored in several studies (re-used runs are copied) is kept once, from the first study.
    """
    seen: set[str] = set()
    runs = []
    for study in studies:
        folder = Path(study) / "runs"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: pass a study folder (one with runs/ inside)")
        for f in sorted(folder.glob("*.json")):
            m = _STEM.match(f.stem)
            if m is None or f.name in seen:
                continue  # selection records (select.*) and other files have no seed-settings tail
            r = json.loads(f.read_text())
            if "task" not in r or "accuracy" not in r:
                continue
            seen.add(f.name)
            task_stem = f.stem.split(".", 1)[0]
            method = m["head"][len(task_stem) + 1:]
            rows = r.get("rows")
            correct = None if not rows else {str(x["id"]): bool(x["likelihood_correct"]) for x in rows}
            runs.append(StoredRun(str(r["task"]), method, int(m["seed"]), m["tail"], f, correct))
    return runs


def paired_difference(a: Sequence[dict[str, bool]], b: Sequence[dict[str, bool]]) -> dict[str, Any]:
    """Mean of ``correct_A - correct_B`` over the questions both runs of each pair scored, with its SE.

    ``a[i]`` and ``b[i]`` are one pair of runs (same task, seed and settings): question id -> correct.
    A question's difference is averaged over the pairs that scored it; questions are the sampling unit.

    Example:
        >>> a = [{"q1": True, "q2": True, "q3": False, "q4": True}]
        >>> b = [{"q1": True, "q2": False, "q3": False, "q4": False}]
        >>> r = paired_difference(a, b)
        >>> r["diff"], round(r["se"], 3), r["questions"], r["a_only"], r["b_only"]
        (0.5, 0.289, 4, 2, 0)
    """
    if len(a) != len(b) or not a:
        raise ValueError("a and b must be non-empty lists of the same length (one entry per pair of runs)")
    per_q: dict[str, list[float]] = defaultdict(list)
    acc_a, acc_b, a_only, b_only = [], [], 0, 0
    for ra, rb in zip(a, b):
        shared = sorted(set(ra) & set(rb))
        if not shared:
            raise ValueError("a pair of runs shares no question id: were they scored on the same test sample?")
        for q in shared:
            per_q[q].append(float(ra[q]) - float(rb[q]))
            a_only += ra[q] and not rb[q]
            b_only += rb[q] and not ra[q]
        acc_a.append(statistics.fmean(float(ra[q]) for q in shared))
        acc_b.append(statistics.fmean(float(rb[q]) for q in shared))
    d = [statistics.fmean(v) for v in per_q.values()]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
    return {"diff": statistics.fmean(d), "se": se, "questions": len(d), "pairs": len(a),
            "acc_a": statistics.fmean(acc_a), "acc_b": statistics.fmean(acc_b), "a_only": a_only, "b_only": b_only}


def compare(runs: Sequence[StoredRun], a: str, b: str, *, tasks: Sequence[str] | None = None,
            seeds: Sequence[int] | None = None, settings: str | None = None) -> tuple[dict[str, Any] | None, list[str]]:
    """Pair method ``a``'s runs with method ``b``'s on (task, seed, settings); the paired difference
    over every pair with predictions on both sides, and the runs left out for lack of predictions.
    ``settings`` (e.g. ``"e3.n50.t200"``) keeps only runs with those epochs and sample sizes."""
    def keep(r: StoredRun) -> bool:
        return ((tasks is None or r.task in tasks) and (settings is None or r.settings == settings)
                and (seeds is None or r.seed in seeds or r.method in SEEDLESS))

    def match(x: StoredRun, y: StoredRun) -> bool:
        return ((x.task, x.settings) == (y.task, y.settings)
                and (x.seed == y.seed or x.method in SEEDLESS or y.method in SEEDLESS))

    once: dict[tuple[str, str, str], StoredRun] = {}  # a seedless method: its first stored run per task and settings
    for r in runs:
        if r.method in SEEDLESS:
            once.setdefault((r.method, r.task, r.settings), r)
    runs = [r for r in runs if r.method not in SEEDLESS or once[r.method, r.task, r.settings] is r]
    pairs, missing = [], []
    for ra in (r for r in runs if r.method == a and keep(r)):
        for rb in (r for r in runs if r.method == b and keep(r) and match(ra, r)):
            without = [r.path.name for r in (ra, rb) if r.correct is None]
            if without:
                missing += [w for w in without if w not in missing]
                continue
            pairs.append((ra, rb))
    if not pairs:
        return None, missing
    res = paired_difference([x.correct for x, _ in pairs], [y.correct for _, y in pairs])  # type: ignore[misc]
    res["tasks"] = "/".join(dict.fromkeys(x.task for x, _ in pairs))
    seeded = [y if x.method in SEEDLESS else x for x, y in pairs]
    res["seeds"] = "/".join(str(s) for s in sorted({r.seed for r in seeded}))
    return res, missing


def why_unpaired(runs: Sequence[StoredRun], a: str, b: str, *, tasks: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None, settings: str | None = None) -> list[str]:
    """Why :func:`compare` found no pair of ``a`` and ``b``, one line per task: a method with no stored
    run there at all (with these settings and seeds), runs on both sides that kept no per-question
    predictions, or runs on both sides with no seed in common.

    Example:
        >>> r = StoredRun("boolq", "jola", 1, "e3.n200.t200", Path("jola.json"), None)
        >>> why_unpaired([r], "jola", "lora", settings="e3.n200.t200")
        ['boolq: lora has no stored run with settings e3.n200.t200']
        >>> import dataclasses
        >>> why_unpaired([r, dataclasses.replace(r, method="lora", path=Path("lora.json"))], "jola", "lora")
        ['boolq: runs of both exist, but these kept no per-question predictions: jola.json, lora.json']
    """
    def keep(r: StoredRun) -> bool:
        return ((tasks is None or r.task in tasks) and (settings is None or r.settings == settings)
                and (seeds is None or r.seed in seeds or r.method in SEEDLESS))

    where = "".join([f" with settings {settings}" if settings else "",
                     f" and seed {'/'.join(map(str, seeds))}" if seeds and settings else
                     f" with seed {'/'.join(map(str, seeds))}" if seeds else ""])
    reasons = []
    for task in tasks or sorted({r.task for r in runs if r.method in (a, b) and keep(r)}):
        have = {m: [r for r in runs if r.method == m and r.task == task and keep(r)] for m in (a, b)}
        absent = [m for m in dict.fromkeys((a, b)) if not have[m]]
        if absent:
            reasons.append(f"{task}: {' and '.join(absent)} {'has' if len(absent) == 1 else 'have'} no stored run"
                           f"{where}")
            continue
        res, missing = compare(runs, a, b, tasks=[task], seeds=seeds, settings=settings)
        if res is not None:
            continue
        if missing:
            reasons.append(f"{task}: runs of both exist, but these kept no per-question predictions: "
                           f"{', '.join(sorted(missing))}")
        else:
            seeds_of = {m: "/".join(str(s) for s in sorted({r.seed for r in have[m]})) for m in (a, b)}
            reasons.append(f"{task}: runs of both exist, but with no seed in common ({a}: seeds {seeds_of[a]}; "
                           f"{b}: seeds {seeds_of[b]})")
    return reasons


def _settings_order(settings: str) -> tuple[int, ...]:
    """Sort key of a settings tail by its numbers, so n50 comes before n100.

    Example:
        >>> sorted(["e3.n100.t200", "e3.n50.t200"], key=_settings_order)
        ['e3.n50.t200', 'e3.n100.t200']
    """
    return tuple(int(x) for x in re.findall(r"\d+", settings))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", nargs="+", required=True, help="study folders whose runs/ are read")
    ap.add_argument("--a", required=True, help="method compared (as named in the run files)")
    ap.add_argument("--b", nargs="+", required=True, help="methods it is compared against")
    ap.add_argument("--tasks", nargs="+", default=None, help="only these tasks (default: every task with pairs)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    ap.add_argument("--out", default=None, help="folder for paired.csv / paired.md (default: print only)")
    args = ap.parse_args(argv)
    runs = load_runs(args.studies)
    methods = sorted({r.method for r in runs})
    for m in [args.a, *args.b]:
        if m not in methods:
            ap.error(f"no stored run of method {m!r} in {args.studies}; methods there: {', '.join(methods)}")
    # one row per settings (epochs, training and test sizes): a data-size study is compared size by size
    all_settings = sorted({r.settings for r in runs if r.method == args.a}, key=_settings_order)
    rows, skipped = [], []
    for b in args.b:
        for st in all_settings:
            res, missing = compare(runs, args.a, b, tasks=args.tasks, seeds=args.seeds, settings=st)
            skipped += missing
            if res is not None:
                rows.append({"a": args.a, "b": b, "settings": st, **res})
        if not any(r["b"] == b for r in rows):
            reasons = [x for st in all_settings
                       for x in why_unpaired(runs, args.a, b, tasks=args.tasks, seeds=args.seeds, settings=st)]
            print(f"[paired] {args.a} vs {b}: no pair of runs to compare" + "".join(f"\n  {x}" for x in reasons))
    lines = ["| A | B | settings | tasks | seeds | questions | acc A | acc B | A - B (paired SE) | A right, B wrong "
             "| B right, A wrong |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['a']} | {r['b']} | {r['settings']} | {r['tasks']} | {r['seeds']} | {r['questions']} | "
                     f"{fmt(r['acc_a'])} | {fmt(r['acc_b'])} | {r['diff']:+.3f} ± {r['se']:.3f} | {r['a_only']} | "
                     f"{r['b_only']} |")
    if skipped:
        lines += ["", f"Left out (no per-question predictions stored): {', '.join(sorted(set(skipped)))}"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out and rows:
        write_table(Path(args.out), "paired", rows, text)
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
