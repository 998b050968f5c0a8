"""Meta-train the SMP head scorer on the bundled model over a mix of the bundled tasks.

Usage::

    python -m jola_lens.selection.smp_meta_train --out jola_lens/assets/smp_scorer_smollm2 --steps 20

Loads ``jola_lens.loading.load_model()`` (SmolLM2), tokenises the training splits of the tasks
(default ARC-Easy, boolq, openbookqa, ARC-Challenge, resolved like :func:`jola_lens.tasks.load_task`:
``$JOLA_LENS_DATA``, ``./data``, then ``../shared/data``) with the experiment's prompt format
(:class:`jola_lens.experiment.TaskSpec` defaults), meta-trains with :func:`meta_train_smp` (tasks
in turn), and saves the scorer with :func:`save_scorer` (a few hundred kB of safetensors plus
JSON). The held-out meta-loss (the validation splits, fixed draws) is printed before and after.

The defaults (20 steps of 4 examples, 128 tokens) keep the run near 5 minutes on 2 CPU cores,
where one step (two forward passes and one backward pass of the 135M model) takes about 10 s.
That is far from SMP's own budget (6,000 steps of 480 examples, SGD at lr 2e-2): a scorer
trained this briefly barely departs from its initialisation. Give more ``--steps`` (and a GPU)
for a scorer worth using; ``--optimizer adam --lr 1e-3`` moves faster per step.

Example (the argument parser only)::

    >>> args = build_parser().parse_args(["--out", "x", "--steps", "3"])
    >>> args.steps, args.tasks[0], args.lr
    (3, 'ARC-Easy', 0.02)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

DEFAULT_TASKS = ("ARC-Easy", "boolq", "openbookqa", "ARC-Challenge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jola_lens.selection.smp_meta_train",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for scorer.safetensors and scorer.json")
    p.add_argument("--steps", type=int, default=20,
                   help="optimiser steps (default 20: about 5 minutes on 2 CPU cores with the defaults below)")
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), help="task folders to mix")
    p.add_argument("--data-root", default=None, help="folder holding the task folders")
    p.add_argument("--train-size", type=int, default=200, help="training examples per task")
    p.add_argument("--valid-size", type=int, default=4,
                   help="held-out examples per task for the before/after loss (0 skips it)")
    p.add_argument("--max-length", type=int, default=128, help="token cap per example (prompts are cut on the left)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-2)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--size", type=int, default=64, help="attention-image side (multiple of 32)")
    p.add_argument("--ndf", type=int, default=4)
    p.add_argument("--recalibration-batches", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--model", default="smollm2")
    return p


def task_rows(tokenizer: Any, tasks: Sequence[str], *, data_root: str | None, train_size: int, valid_size: int,
              max_length: int, seed: int) -> tuple[dict[str, list], dict[str, list]]:
    """Tokenised training and validation rows per task, with the experiment's prompt format."""
    from ..experiment import TaskSpec, load_task_data, tokenize_splits

    train, valid = {}, {}
    for name in tasks:
        spec = TaskSpec(task=name, data_root=data_root, train_size=train_size, valid_size=max(valid_size, 1),
                        test_size=1, seed=seed, max_length=max_length)
        tr, va = tokenize_splits(tokenizer, load_task_data(spec), spec)
        train[name], valid[name] = tr, va[:valid_size]
    return train, valid


def held_out_loss(scorer: Any, model: Any, valid: dict[str, list], batch_size: int, draws: int = 2) -> float:
    """Mean meta-loss over every validation batch, with fixed draws (eval-mode scorer)."""
    from ..train import collate
    from .base import pad_id_of
    from .smp import smp_meta_loss

    was = scorer.training
    scorer.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for rows in valid.values():
            for start in range(0, len(rows) - 1, batch_size):
                chunk = rows[start:start + batch_size]
                if len(chunk) < 2:
                    continue
                b = collate(chunk, pad_id_of(model))
                b = {k: v.to(model.cfg.device) for k, v in b.items()}
                for d in range(draws):
                    loss, _ = smp_meta_loss(scorer, model, b, torch.Generator().manual_seed(1000 + d))
                    total += float(loss)
                    n += 1
    scorer.train(was)
    return total / max(n, 1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from ..loading import load_model
    from .smp import SMPScorer, meta_train_smp, save_scorer

    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    model = load_model(args.model, verbose=False)
    t_load = time.time() - t0
    train, valid = task_rows(model.tokenizer, args.tasks, data_root=args.data_root, train_size=args.train_size,
                             valid_size=args.valid_size, max_length=args.max_length, seed=args.seed)
    torch.manual_seed(args.seed)
    scorer = SMPScorer(ndf=args.ndf, size=args.size)
    before = held_out_loss(scorer, model, valid, args.batch_size) if args.valid_size >= 2 else None
    scorer, history = meta_train_smp(model, train, args.steps, scorer=scorer, batch_size=args.batch_size,
                                     lr=args.lr, optimizer=args.optimizer, seed=args.seed, log_every=5,
                                     recalibration_batches=args.recalibration_batches)
    after = held_out_loss(scorer, model, valid, args.batch_size) if args.valid_size >= 2 else None
    meta = {
        "model_name": model.cfg.model_name,
        "n_layers": model.cfg.n_layers,
        "n_heads": model.cfg.n_heads,
        "tasks": list(args.tasks),
        "train_examples": {k: len(v) for k, v in train.items()},
        "settings": history["settings"],
        "loss_first10": history["loss"][:10],
        "loss_last10": history["loss"][-10:],
        "held_out_before": before,
        "held_out_after": after,
        "train_seconds": history["seconds"],
        "load_seconds": t_load,
        "torch_threads": torch.get_num_threads(),
        "command": "python -m jola_lens.selection.smp_meta_train " + " ".join(argv if argv is not None else []),
    }
    out = save_scorer(scorer, args.out, meta)
    size = sum(f.stat().st_size for f in Path(out).iterdir())
    summary = {"out": str(out), "bytes": size, **{k: meta[k] for k in ("held_out_before", "held_out_after",
                                                                        "train_seconds", "load_seconds")}}
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
