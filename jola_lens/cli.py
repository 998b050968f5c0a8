"""The ``jola-lens`` command: train | eval | heads | merge | demo.

``train`` trains JoLA or any other editor (``--method lora``) from a recipe (``--recipe demo``, the
default, or ``paper``) with flags on top; ``eval --run`` and ``heads`` read a saved run of any editor.

User errors (bad paths, malformed data, a run trained on another model, bad settings)
exit with status 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .recipes import DEMO_DEFAULTS, list_recipes  # noqa: F401  (DEMO_DEFAULTS: its first home was here)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions reported as one ``jola-lens: error:`` line (exit 2).

    Only the library's error classes whose modules are already imported are listed: an error of a module
    that never loaded cannot have been raised, and importing it here would delay the message by the
    torch import (a data error is then reported well under a second after the start)."""
    found: list[type[BaseException]] = [ValueError, FileNotFoundError, NotADirectoryError, PermissionError]
    for module, name in (("jola_lens.tasks.schema", "DataError"), ("jola_lens.loading", "ModelLoadError"),
                         ("jola_lens.editors.base", "EditorLoadError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _diverged_error() -> tuple[type[BaseException], ...]:
    """Training stopped without a result (exit 3): the run diverged, or a process of its group died."""
    found: list[type[BaseException]] = []
    for module, name in (("jola_lens.train", "TrainingDiverged"), ("jola_lens.distributed", "RankFailure")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def _add_task_args(p: argparse.ArgumentParser, default_task: str = "demo") -> None:
    p.add_argument("--task", default=default_task,
                   help="'demo' (bundled ARC-Easy sample), a task folder name under --data-root, or a folder path")
    p.add_argument("--data-root", default=None,
                   help="folder holding task folders (default: $JOLA_LENS_DATA, ./data, ../shared/data)")
    p.add_argument("--data", dest="task", default=argparse.SUPPRESS,
                   help="your data: a .jsonl / .json / .csv / .tsv file (carved into test, train and validation "
                        "by the seeds) or a folder with train and test files; the same as --task")
    for name in ("question", "answer", "choices", "id"):
        p.add_argument(f"--{name}-field" if name != "question" else "--prompt-field", dest=f"{name}_field",
                       default=None, metavar="NAME",
                       help=f"the field (column) of your data that holds the {name if name != 'question' else 'prompt'}"
                            + (" (texts, answerN labels, or 0-based option indices)" if name == "answer" else ""))
    p.add_argument("--style", default=None, help="prompt style: chat | alpaca | cloze (TaskSpec default) | qa | "
                                                 "verbatim (your prompt as written)")
    p.add_argument("--target", default=None, help="label | choice_text")
    p.add_argument("--train-size", type=int, default=None, help="training examples (TaskSpec default: 200)")
    p.add_argument("--valid-size", type=int, default=None,
                   help="validation examples (default: 200 for train, 0 for eval)")
    p.add_argument("--test-size", type=int, default=None, help="test examples, a fixed sample (default: 300)")
    p.add_argument("--seed", type=int, default=None, help="seeds the splits, the editor and training (default: 42)")
    p.add_argument("--model", default=None,
                   help="'smollm2' (bundled), a local HF checkpoint dir, a .gguf, or a TL model name; eval --run "
                        "without it: the run's own model (default: smollm2)")
    _add_backend_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default=None, choices=("hooked", "bridge", "hf"),
                   help="hooked: TransformerLens's HookedTransformer; bridge: TransformerLens's TransformerBridge; "
                        "hf: the plain transformers model, no conversion (default: hooked where TransformerLens has "
                        "it, 3.x, else hf; eval --run: the run's own)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default=None, choices=list_recipes(),
                   help="training settings to start from (default: demo; paper: the JoLA paper's)")
    p.add_argument("--method", default="jola",
                   help="editor to train: jola (default), lora, bitfit, red, loreft, lofit, iti")
    p.add_argument("--config", default=None, help="YAML with sections task, jola, train (flags override it)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (recipe demo: 3, paper: 20)")
    p.add_argument("--lr", type=float, default=None, help="learning rate of the edits (both recipes: 5e-3)")
    p.add_argument("--gate-lr", type=float, default=None,
                   help="learning rate of the gate log-alphas (demo: 0.2; paper: the same as --lr)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default: 8)")
    p.add_argument("--penalty", default=None, help="paper | jola_code | none")
    p.add_argument("--gate-schedule", default=None, help="constant | expon | linear | cyclic | perform")
    p.add_argument("--gate-lambda", type=float, default=None,
                   help="penalty weight lambda_0 (demo: 5e-3; paper: the released code's constant)")
    p.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps (demo: 10, paper: 50)")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience in epochs (default: 2)")
    p.add_argument("--layers", default=None, help="comma-separated layers to edit (default: all)")
    p.add_argument("--edit", default=None, help="both | additive | multiplicative")
    p.add_argument("--gate-mode", default=None, help="two | shared | none")
    p.add_argument("--sites", default=None, help="attn | mlp | attn,mlp")
    p.add_argument("--no-generation", action="store_true", help="skip generation-based scoring")
    p.add_argument("--no-figures", action="store_true", help="do not write the HTML gate figures into --out")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" where there is a default to show (not for flags, nor where the help gives it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text or not text:
            return text
        return super()._get_help_string(action) or text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    fmt = _DefaultsFormatter
    ap = argparse.ArgumentParser(prog="jola-lens", description="JoLA on TransformerLens", formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"jola-lens {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_parser = sub.add_parser

    def add_parser(*a: Any, **k: Any) -> argparse.ArgumentParser:
        return _add_parser(*a, formatter_class=fmt, **k)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("demo", help="train JoLA on the bundled ARC-Easy sample and show the result")
    p.add_argument("--out", default="demo_out", help="output folder (an earlier demo there is replaced)")
    p.add_argument("--seed", type=int, default=42, help="seeds the splits, the editor and training")
    p.add_argument("--epochs", type=int, default=DEMO_DEFAULTS["epochs"], help="training epochs")
    p.add_argument("--test-size", type=int, default=300, help="test questions")
    p.add_argument("--train-size", type=int, default=200, help="training examples")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out that is not a demo's")
    p.add_argument("--no-figures", action="store_true", help="do not write the HTML gate figures")
    _add_backend_arg(p)

    p = sub.add_parser("train", help="train JoLA on a task and evaluate it")
    _add_task_args(p)
    _add_train_args(p)
    p.add_argument("--out", required=True, help="output folder (edits, gate log, results.json)")
    p.add_argument("--no-zero-shot", action="store_true", help="skip scoring the unedited model")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoint in --out (re-running the same command does this too)")
    p.add_argument("--checkpoint-every", type=int, default=50,
                   help="write a checkpoint every this many steps (and every epoch); 0: epochs only")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="the frozen base's dtype (edits and gates stay float32)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each layer in the backward pass instead of storing it (hf backend)")
    p.add_argument("--device-map", default=None,
                   help="hf backend: accelerate's placement of the base ('auto', or a JSON object of module "
                        "names to devices, 'cpu' or 'disk'); with --offload-folder for 'disk'")
    p.add_argument("--offload-folder", default=None, help="where --device-map's 'disk' weights go")
    p.add_argument("--fsdp", action="store_true",
                   help="under accelerate launch / torchrun: shard the frozen base over the processes (FSDP2; "
                        "hf backend; also on with accelerate launch --use_fsdp); scoring by likelihood only")

    p = sub.add_parser("eval", help="evaluate zero-shot, or with saved edits (--run)")
    _add_task_args(p)
    p.add_argument("--run", default=None,
                   help="a saved run folder of any editor (edits.safetensors + jola_config.json)")
    p.add_argument("--out", default=None, help="write scores and per-example predictions here")
    p.add_argument("--no-generation", action="store_true", help="skip generation-based scoring")
    p.add_argument("--allow-other-model", action="store_true",
                   help="load --run onto a model whose weights differ from the one it was trained on")

    p = sub.add_parser("heads", help="table of the open (or chosen) heads of a saved run")
    p.add_argument("run")
    p.add_argument("--html", default=None, help="also write heatmap and trajectory figures into this folder")
    p.add_argument("--all", action="store_true", help="list every head, open or not")
    p.add_argument("--format", default="table", choices=("table", "json", "csv"),
                   help="table (for reading), json or csv (for scripts)")

    p = sub.add_parser("merge", help="fold a run's edits into the weights and write the merged model")
    p.add_argument("run")
    p.add_argument("--out", required=True, help="folder for the merged model")
    p.add_argument("--format", default="tl", choices=("tl", "hf"),
                   help="hf: a standard Hugging Face checkpoint (AutoModelForCausalLM.from_pretrained, vLLM, "
                        "lm-eval); tl: TransformerLens weight names and tl_config.json")
    p.add_argument("--model", default=None, help="the model the run was trained on (default: the run's record)")
    p.add_argument("--allow-other-model", action="store_true",
                   help="merge into a model whose weights differ from the one the run was trained on")
    p = sub.add_parser("lm-eval-task", help="write a task's test questions as an lm-evaluation-harness task")
    _add_task_args(p)
    p.add_argument("--out", required=True, help="folder for the task YAML and JSONL (lm_eval --include_path)")
    p.add_argument("--name", default=None, help="the harness task name (default: jola_<task>)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # (--help and usage errors end here, before torch is imported)
    from .settings import set_offline_env

    set_offline_env()
    _one_line_notes()
    try:
        return {"demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "heads": cmd_heads,
                "merge": cmd_merge, "lm-eval-task": cmd_lm_eval_task}[args.cmd](args)
    except _user_errors() as e:
        print(f"jola-lens: error: {e}", file=sys.stderr)
        return 2
    except _diverged_error() as e:
        print(f"jola-lens: error: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as e:
        print(f"jola-lens: {e}" if str(e) else "jola-lens: interrupted", file=sys.stderr)
        return 130


# ---- helpers -----------------------------------------------------------------------------------
def _one_line_notes() -> None:
    """Show the library's data notes (dropped or de-duplicated rows...) as one ``jola-lens: note:`` line."""
    import warnings

    from .tasks import DataNote

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        if issubclass(category, DataNote):
            print(f"jola-lens: note: {message}", file=sys.stderr, flush=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.simplefilter("always", DataNote)


def _check_writable(folder: str | None) -> None:
    """An output folder that cannot be written is reported before the model loads."""
    if folder is None:
        return
    from .outdir import check_writable

    check_writable(folder)



def _load_yaml(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or set(cfg) - {"task", "jola", "train", "recipe"}:
        raise ValueError(f"{p}: expected a mapping with sections task, jola, train (and optionally recipe)")
    for section in ("task", "jola", "train"):
        if cfg.get(section) is None:
            cfg.pop(section, None)
        elif not isinstance(cfg[section], dict):
            raise ValueError(f"{p}: section {section!r} must be a mapping of settings, got {cfg[section]!r}")
    if "recipe" in cfg and not isinstance(cfg["recipe"], str):
        raise ValueError(f"{p}: recipe must be a recipe name ({', '.join(list_recipes())}), got {cfg['recipe']!r}")
    return cfg


def _spec(args: argparse.Namespace, base: dict[str, Any] | None = None):
    from .tasks.spec import TaskSpec

    d = dict(base or {})
    for key in ("task", "data_root", "style", "target", "train_size", "valid_size", "test_size", "seed"):
        v = getattr(args, key, None)
        if v is not None:
            d[key] = v
    fields = {name: getattr(args, f"{name}_field") for name in ("question", "answer", "choices", "id")
              if getattr(args, f"{name}_field", None)}
    if fields:
        d["fields"] = {**(d.get("fields") or {}), **fields}
    return TaskSpec.from_dict(d, "task")


def _unset_sizes(args: argparse.Namespace, base: dict[str, Any] | None = None) -> list[str]:
    """The split sizes set neither by a flag nor in the YAML: these may shrink to fit small data."""
    from .tasks.spec import SIZE_FIELDS

    return [k for k in SIZE_FIELDS if getattr(args, k, None) is None and k not in (base or {})]


def _configs(args: argparse.Namespace, base: dict[str, Any]):
    from .config import JoLAConfig
    from .recipes import get_recipe
    from .train import TrainConfig

    j = dict(base.get("jola", {}))
    if args.layers:
        try:
            j["layers"] = [int(x) for x in args.layers.split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--layers takes comma-separated layer numbers (e.g. 0,3,5), got {args.layers!r}") \
                from None
    for key in ("edit", "gate_mode"):
        if getattr(args, key):
            j[key] = getattr(args, key)
    if args.sites:
        j["sites"] = tuple(args.sites.split(","))
    recipe = get_recipe(getattr(args, "recipe", None) or base.get("recipe") or "demo")
    t = {**recipe.train, **base.get("train", {})}
    for key in ("epochs", "lr", "gate_lr", "batch_size", "penalty", "gate_schedule", "gate_lambda",
                "warmup_steps", "patience", "seed"):
        v = getattr(args, key, None)
        if v is not None:
            t[key] = v
    return JoLAConfig.from_dict({**recipe.jola, **j}, "jola"), TrainConfig.from_dict(t, "train")


def _print_heads(rows: list[dict[str, Any]], limit: int | None = 20) -> None:
    if not rows:
        print("  (no open heads)")
        return
    print(f"  {'layer':>5} {'head':>4} {'g_a':>6} {'g_m':>6} {'|a|':>7} {'|m|':>7}")
    for r in rows[:limit] if limit else rows:
        print(f"  {r['layer']:>5} {r['head']:>4} {r['g_a']:>6.3f} {r['g_m']:>6.3f} "
              f"{r['norm_a']:>7.3f} {r['norm_m']:>7.3f}")
    if limit and len(rows) > limit:
        print(f"  ... {len(rows) - limit} more (jola-lens heads RUN --all)")


def _write_figures(run_dir: Path) -> list[Path]:
    try:
        from .plots import write_run_figures
    except ImportError:  # plots are optional for training itself
        return []
    return write_run_figures(run_dir, run_dir)


# ---- commands ----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .config import JoLAConfig
    from .distributed import init_from_env
    from .experiment import TaskSpec, run_experiment
    from .loading import load_model
    from .outdir import OutputFolder
    from .recipes import get_recipe

    t0 = time.time()
    out = Path(args.out)
    spec = TaskSpec(task="demo", seed=args.seed, train_size=args.train_size, test_size=args.test_size)
    tc = get_recipe("demo").train_config(epochs=args.epochs, seed=args.seed)
    dist = init_from_env()  # under accelerate launch / torchrun: data parallel training, rank 0 the rest
    if dist.enabled and not dist.is_main:
        model = load_model("smollm2", backend=args.backend or "auto")
        run_experiment(model, spec, jola_config=JoLAConfig(), train_config=tc, out_dir=out, zero_shot=False,
                       generation=False, progress=False)
        return 0
    # the demo replaces its own earlier output; any other finished run needs --overwrite
    with OutputFolder(out, overwrite=args.overwrite, replaceable=lambda r: "demo_seconds" in r) as folder:
        print("[jola_lens] loading the bundled SmolLM2-135M-Instruct"
              + (f" ({args.backend} backend)" if args.backend else ""))
        model = load_model("smollm2", backend=args.backend or "auto")
        res = run_experiment(model, spec, jola_config=JoLAConfig(), train_config=tc, out_dir=folder,
                             progress=not args.no_progress)
        return _demo_report(args, res, out, t0)


def _demo_report(args: argparse.Namespace, res: Any, out: Path, t0: float) -> int:
    from .outdir import atomic_write_text

    r = res.results
    figs = [] if args.no_figures else _write_figures(out)
    r["demo_seconds"] = time.time() - t0
    r["figures"] = [str(p) for p in figs]
    atomic_write_text(out / "results.json", json.dumps(r, indent=2))
    zs, jl = r["zero_shot"], r["jola"]
    se = jl.get("likelihood_acc_stderr", 0.0)
    print()
    print(f"ARC-Easy, {r['n_test']} test questions, JoLA trained on {r['n_train']} examples (seed {args.seed})")
    print(f"  {'':28} {'likelihood':>10} {'generation':>10}")
    print(f"  {'commonest training label':28} {r['majority_label_acc']:>10.3f} {'':>10}")
    print(f"  {'zero-shot':28} {zs['likelihood_acc']:>10.3f} {zs.get('generation_acc', float('nan')):>10.3f}")
    print(f"  {'JoLA':28} {jl['likelihood_acc']:>10.3f} {jl.get('generation_acc', float('nan')):>10.3f}")
    print(f"  (standard error at n={r['n_test']}: about {se:.3f})")
    og = r["open_gates"]
    print(f"open gates: additive {og['additive']}/270, multiplicative {og['multiplicative']}/270")
    print("open heads (strongest first):")
    _print_heads(r["active_heads"], 15)
    print(f"saved: {out}/edits.safetensors, results.json" + (f", {len(figs)} figures" if figs else ""))
    print(f"demo wall time {r['demo_seconds']:.0f} s")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .tasks.spec import fit_task_data

    # everything that can be checked without the model is checked first: the data (before torch is
    # imported), then settings, method and --out
    base = _load_yaml(args.config)
    spec = _spec(args, base.get("task"))
    spec, td = fit_task_data(spec, _unset_sizes(args, base.get("task")))
    from .editors import list_editors
    from .experiment import run_experiment
    from .loading import load_model
    from .outdir import OutputFolder

    jc, tc = _configs(args, base)
    if args.method not in list_editors():
        raise ValueError(f"unknown --method {args.method!r}; choose from {list_editors()}")
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    from .distributed import fsdp_requested, init_from_env

    args.fsdp = bool(getattr(args, "fsdp", False) or fsdp_requested())
    if args.fsdp and (args.backend or "hf") != "hf":
        raise ValueError(f"--fsdp shards the hf backend's model; --backend {args.backend} cannot be sharded")
    if args.fsdp:
        args.backend = "hf"
    dist = init_from_env()  # under accelerate launch / torchrun: join the group (data parallel training)
    if args.fsdp and not dist.enabled:
        raise ValueError("--fsdp shards the base over the processes of accelerate launch / torchrun; this is one "
                         "process (launch it with accelerate launch --use_fsdp -m jola_lens.cli train ...)")
    load_kw = _placement(args, dist)
    if dist.enabled and not dist.is_main:  # rank 0 owns --out, evaluates and prints; this rank trains
        model = _prepare(load_model(args.model or "smollm2", backend=args.backend or "auto", **load_kw), args)
        run_experiment(model, spec, jola_config=jc, train_config=tc, out_dir=args.out, zero_shot=False,
                       generation=False, progress=False, method=args.method, task_data=td,
                       checkpoint_every=args.checkpoint_every)
        return 0
    with OutputFolder(args.out, overwrite=args.overwrite, resume=True if args.resume else None) as folder:
        model = _prepare(load_model(args.model or "smollm2", backend=args.backend or "auto", **load_kw), args)
        res = run_experiment(model, spec, jola_config=jc, train_config=tc, out_dir=folder,
                             zero_shot=not args.no_zero_shot, generation=not args.no_generation,
                             progress=not args.no_progress, method=args.method, task_data=td,
                             checkpoint_every=args.checkpoint_every)
        if args.method == "jola" and not args.no_figures:
            _write_figures(Path(args.out))
    keys = ("zero_shot", args.method, "open_gates")
    print(json.dumps({k: res.results[k] for k in keys if k in res.results}, indent=2))
    return 0


def _placement(args: argparse.Namespace, dist: Any) -> dict[str, Any]:
    """``load_model`` keywords from ``--dtype`` / ``--device-map`` / ``--offload-folder`` and the process's
    rank (one GPU per rank under a launcher, where there are GPUs)."""
    import torch

    kw: dict[str, Any] = {"dtype": getattr(torch, args.dtype)}
    if args.device_map:
        if dist.enabled:
            raise ValueError("--device-map spreads one model over devices; under a launcher each process holds "
                             "its own copy: use one or the other")
        dm = args.device_map
        if dm.strip().startswith("{"):
            try:
                dm = json.loads(dm)
            except ValueError:
                raise ValueError(f"--device-map: not a JSON object: {args.device_map!r}") from None
        kw.update(device_map=dm, offload_folder=args.offload_folder)
    elif dist.enabled and torch.cuda.is_available() and not getattr(args, "fsdp", False):
        kw["device"] = f"cuda:{dist.local_rank}"  # (under --fsdp each rank loads on the CPU, then shards)
    return kw


def _prepare(model: Any, args: argparse.Namespace) -> Any:
    if args.gradient_checkpointing:
        enable = getattr(model, "gradient_checkpointing_enable", None)
        if enable is None:
            raise ValueError("--gradient-checkpointing needs the hf backend (--backend hf)")
        try:
            enable()
        except NotImplementedError as e:
            raise ValueError(f"--gradient-checkpointing: {e}") from None
    if getattr(args, "fsdp", False):
        from .distributed import current, local_share, shard_base

        shard_base(model)
        here, whole = local_share(model)
        if current().is_main:
            print(f"[jola_lens] FSDP over {current().world} processes: each holds {here:,} of the base's "
                  f"{whole:,} weights at rest ({here / max(whole, 1):.1%}; a layer's are gathered while it runs, "
                  "the embeddings' and unembedding's for a whole step)", flush=True)
    return model


def cmd_eval(args: argparse.Namespace) -> int:
    from .tasks.spec import fit_task_data

    if args.valid_size is None:
        args.valid_size = 0  # scoring needs no validation split (a small task could not spare one)
    spec = _spec(args)
    spec, td = fit_task_data(spec, _unset_sizes(args))  # bad data is reported first, before torch is imported
    from .editors import load_editor
    from .editors.io import read_meta
    from .experiment import evaluate_task
    from .loading import load_model

    meta = read_meta(args.run)[0] if args.run else {}  # a bad run folder is reported before the model loads
    _check_writable(args.out)  # and an --out that cannot be written
    name, backend = _run_model(args, meta)
    model = load_model(name, backend=backend)
    target = load_editor(args.run, model, check_model_name=not args.allow_other_model) if args.run else model
    out = Path(args.out) if args.out else None
    r = evaluate_task(target, td, spec, generation=not args.no_generation, progress=not args.no_progress,
                      out_path=out / "predictions.jsonl" if out else None)
    r["which"] = f"{target.display_name} edits from {args.run}" if args.run else "zero-shot"
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scores.json").write_text(json.dumps(r, indent=2))
    print(json.dumps(r, indent=2))
    return 0


def _run_model(args: argparse.Namespace, meta: dict[str, Any]) -> tuple[str, str]:
    """The model and backend to load for a run: the flags where given, else the run's record, else the
    bundled model on the hooked backend."""
    source = meta.get("model_source") or {}
    name = args.model or source.get("name_or_path") or "smollm2"
    backend = getattr(args, "backend", None) or source.get("backend") or "auto"
    if backend == "hooked" and not getattr(args, "backend", None):
        from .loading import hooked_available

        if not hooked_available():  # TransformerLens 4.x: the same edit on the other backend
            print("jola-lens: note: the run was trained on the hooked backend, which this TransformerLens lacks; "
                  "loading it on the hf backend (the same edit)", file=sys.stderr)
            backend = "hf"
    if args.model is None and source.get("name_or_path"):
        print(f"[jola_lens] model from the run's record: {name} ({backend} backend)", file=sys.stderr)
    return name, backend


def read_run_heads(run: str | Path) -> list[dict[str, Any]]:
    """One row per head of a saved run (layer, head, g_a, g_m, |a|, |m|), open heads first, without
    loading a model.

    JoLA runs: the deterministic gates and edit norms. Editors that choose heads (LoFiT, ITI): the
    chosen heads have gate 1 (``g_a``; ``g_m`` 0) and the norm of their offset. Other editors edit no
    particular heads: a clear error.
    """
    import torch

    from .editors.io import read_run
    from .editors.jola import saved_head_gates

    d = Path(run)
    saved = read_run(d)
    t = saved.tensors
    if saved.editor == "jola":
        gates, norms = saved_head_gates(saved, "attn")
        mask = t["attn.mask"].float()
        zero = torch.zeros_like(mask)
        ga, gm = gates.get("a", zero), gates.get("m", zero)
        na, nm = norms.get("a", zero), norms.get("m", zero)
    elif saved.editor in ("lofit", "iti"):
        mask = (t["edit.mask"] if saved.editor == "lofit" else t["mask"]).float()
        vec = t["edit.a"] if saved.editor == "lofit" else t["shift"]
        ga, gm = mask, torch.zeros_like(mask)
        na, nm = vec.norm(dim=-1) * mask, torch.zeros_like(mask)
    else:
        raise ValueError(f"{d} is a {saved.editor} run: it edits no particular attention heads, so it has no "
                         "head table (heads works for jola, lofit and iti runs)")
    rows = []
    for layer in range(mask.shape[0]):
        for head in range(mask.shape[1]):
            rows.append({"layer": layer, "head": head, "g_a": float(ga[layer, head]), "g_m": float(gm[layer, head]),
                         "norm_a": float(na[layer, head]), "norm_m": float(nm[layer, head])})
    rows.sort(key=lambda r: -max(r["g_a"], r["g_m"]))
    return rows


def cmd_heads(args: argparse.Namespace) -> int:
    rows = read_run_heads(args.run)
    open_rows = rows if args.all else [r for r in rows if max(r["g_a"], r["g_m"]) > 0]
    if args.format == "json":
        print(json.dumps(open_rows, indent=2))
        return 0
    if args.format == "csv":
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=["layer", "head", "g_a", "g_m", "norm_a", "norm_m"])
        w.writeheader()
        w.writerows(open_rows)
        return 0
    print(f"{len([r for r in rows if max(r['g_a'], r['g_m']) > 0])} of {len(rows)} heads open in {args.run}")
    _print_heads(open_rows, None)
    if args.html:
        from .plots import write_run_figures

        for p in write_run_figures(args.run, args.html):
            print(f"wrote {p}")
    return 0


def cmd_lm_eval_task(args: argparse.Namespace) -> int:
    from .tasks.spec import fit_task_data

    if args.valid_size is None:
        args.valid_size = 0
    spec = _spec(args)
    spec, td = fit_task_data(spec, _unset_sizes(args))
    from transformers import AutoTokenizer

    from .eval.harness import write_lm_eval_task
    from .loading import BUNDLED_NAMES, bundled_checkpoint_dir

    name = args.model or "smollm2"
    tok = AutoTokenizer.from_pretrained(bundled_checkpoint_dir() if name.lower() in BUNDLED_NAMES else name)
    path = write_lm_eval_task(td, spec, tok, args.out, args.name)
    task = path.stem
    print(f"wrote {path} and {path.with_suffix('.jsonl').name} ({len(td.test)} questions); score a model with:")
    print(f"  lm_eval --model hf --model_args pretrained=DIR,dtype=float32 --include_path {args.out} "
          f"--tasks {task} --device cpu --batch_size 16")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from .editors import load_editor, model_identity
    from .editors.io import read_meta
    from .loading import load_model

    meta = read_meta(args.run)[0]
    _check_writable(args.out)
    name, backend = _run_model(args, meta)
    if args.format == "hf":
        backend = "hf"  # the export folds into the HF weights themselves
    elif backend == "auto":
        from .loading import default_backend

        backend = default_backend()
    if args.format == "tl" and backend != "hooked":
        raise ValueError(f"--format tl writes TransformerLens weight names, from the hooked backend; this run is on "
                         f"the {backend} backend: use --format hf (a standard Hugging Face checkpoint), or --backend "
                         "hooked")
    model = load_model(name, backend=backend)
    editor = load_editor(args.run, model, check_model_name=not args.allow_other_model)
    if not editor.supports_merge:
        raise ValueError(f"{args.run} is a {editor.display_name} run: its edit depends on token positions and "
                         "does not fold into the weights")
    if args.format == "hf":
        from .backends.export import save_merged_hf

        info = save_merged_hf(editor, args.out, merged_from=str(args.run))
        print(f"merged model written to {args.out} as a Hugging Face checkpoint ({info['architecture']}; "
              f"reloaded with transformers: largest logit difference {info['max_abs_diff']:.1e})")
        if info["added_biases"]:
            print(f"note: {info['note']}")
        return 0
    merged = editor.merge(inplace=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in merged.state_dict().items()}, str(out / "model.safetensors"))
    cfg = {k: (str(v) if not isinstance(v, (int, float, str, bool, list, type(None))) else v)
           for k, v in merged.cfg.to_dict().items()}
    (out / "tl_config.json").write_text(json.dumps({"identity": model_identity(merged), "cfg": cfg,
                                                     "merged_from": str(args.run)}, indent=2))
    print(f"merged model written to {out} (model.safetensors, tl_config.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
