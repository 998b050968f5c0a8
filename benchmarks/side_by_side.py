"""Evaluation side by side with its anchors, and against the machine's matrix-multiply peak (issue 25).

    python -m benchmarks.side_by_side                 # bundled SmolLM2, 300 ARC-Easy questions (minutes)
    python -m benchmarks.side_by_side --n 64 --rounds 1
    python -m benchmarks.side_by_side --quick         # a tiny random Llama: proves the code runs (seconds)

Writes ``<out>/side_by_side.json`` and ``<out>/side_by_side.md`` (default ``benchmarks/results``) and prints
the table. In one process, on the same checkpoint and the same prompts:

1. **GEMM peak**: fp32 ``torch.mm`` at the model's own shapes (512 rows times d_model x d_mlp, d_mlp x
   d_model, d_model x d_model, d_model x d_vocab), the same thread count; the best GFLOP/s is the peak.
2. **Option scoring** of the demo's test questions (the bundled ARC-Easy sample, the demo's prompts and
   option texts, tokenised once by :func:`jola_lens.eval.scoring.encode_continuations`): jola_lens
   (:func:`jola_lens.eval.score_token_continuations` on the HookedTransformer, batch 16) against
   lm-evaluation-harness's ``HFLM._loglikelihood_tokens`` on the Hugging Face model of the same weights
   and the same token ids (batch 16), interleaved round by round. The picks must agree (``acc`` and ``acc_norm``);
   examples/s are compared. The FLOP count is the model work jola_lens does: each prompt once, each
   option's tokens but the last on top of it, and the unembedding of every position read
   (``2 * params * tokens`` for the matrix products of the blocks, ``4 * n_layers * d_model * ctx`` per
   token for attention, ``2 * d_model * d_vocab`` per read position).
3. **Greedy generation**, 16 new tokens for 16 prompts in one batch (EOS off, so all make exactly 16):
   jola_lens (:func:`jola_lens.eval.generate_tokens`, KV cache) on the hooked backend (base weights: also
   the path of a merged edit), the same with a JoLA edit attached (zero-valued, so the hooks run and the
   tokens cannot change) and on the hf backend, against ``transformers``' ``generate`` with its KV cache,
   left padding. The tokens must be identical; tokens/s are compared.

lm-evaluation-harness is optional (``pip install lm_eval==0.4.13``; ``make bench`` installs it): without
it, step 2 reports jola_lens alone and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
    print(f"[side-by-side] {msg}", file=sys.stderr, flush=True)


# ---- the machine's peak --------------------------------------------------------------------------------
def gemm_peak(d_model: int, d_mlp: int, d_vocab: int, rows: int = 512, repeats: int = 5) -> dict[str, Any]:
    """Best fp32 GFLOP/s of ``torch.mm`` at the model's shapes (median of ``repeats`` per shape)."""
    shapes = {"d_model x d_mlp": (d_model, d_mlp), "d_mlp x d_model": (d_mlp, d_model),
              "d_model x d_model": (d_model, d_model), "d_model x d_vocab": (d_model, d_vocab)}
    out: dict[str, Any] = {"rows": rows, "shapes": {}}
    g = torch.Generator().manual_seed(0)
    for name, (k, n) in shapes.items():
        a, b = torch.randn(rows, k, generator=g), torch.randn(k, n, generator=g)
        torch.mm(a, b)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - t0)
        out["shapes"][name] = round(2 * rows * k * n / statistics.median(times) / 1e9, 2)
    out["peak_gflops"] = max(out["shapes"].values())
    return out


# ---- FLOP counts ---------------------------------------------------------------------------------------
def block_params(cfg: Any) -> int:
    """Weights of the matrix products of the blocks (attention Q, K, V, O and the MLP), no embeddings."""
    kv_heads = getattr(cfg, "n_key_value_heads", None) or cfg.n_heads
    attn = cfg.d_model * cfg.d_head * (2 * cfg.n_heads + 2 * kv_heads)
    gated = getattr(cfg, "gated_mlp", False)
    mlp = cfg.d_model * cfg.d_mlp * (3 if gated else 2)
    return cfg.n_layers * (attn + mlp)


def forward_flops(cfg: Any, positions: list[tuple[int, int]], reads: int) -> int:
    """FLOPs of running tokens through the blocks: ``positions`` lists ``(n_new_tokens, ctx_before)``
    per sequence segment; ``reads`` positions are unembedded."""
    per_token = 2 * block_params(cfg)
    total = 0
    for n, before in positions:
        total += n * per_token
        # attention scores and the weighted sum: 2 * 2 * d_head * n_heads per (query, key) pair, per layer
        pairs = n * before + n * (n + 1) // 2
        total += 4 * cfg.n_layers * cfg.n_heads * cfg.d_head * pairs
    return total + 2 * cfg.d_model * cfg.d_vocab * reads


def scoring_flops(cfg: Any, prompt_ids: list[list[int]], cont_ids: list[list[list[int]]]) -> int:
    """The model work of scoring: each prompt once, each option's tokens but the last after it."""
    segments, reads = [], 0
    for p, conts in zip(prompt_ids, cont_ids):
        segments.append((len(p), 0))
        for c in conts:
            segments.append((len(c) - 1, len(p)))
            reads += len(c)
    return forward_flops(cfg, segments, reads)


# ---- the workloads -------------------------------------------------------------------------------------
def _interleaved_keeping_results(fns: dict[str, Callable[[], Any]], rounds: int
                                 ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """:func:`benchmarks.run.interleaved` (order flipping each round; no warm-up, every call here is long),
    keeping each variant's last result for the agreement checks."""
    from benchmarks.run import interleaved

    results: dict[str, Any] = {}

    def keep(name: str, fn: Callable[[], Any]) -> Callable[[int], None]:
        def call(r: int) -> None:
            results[name] = fn()
        return call

    times = interleaved({n: keep(n, f) for n, f in fns.items()}, repeats=rounds, warmup=0)
    for n, ts in times.items():
        _log(f"{n}: {', '.join(f'{t:.1f}' for t in ts)} s per round")
    return times, results


def demo_questions(model: Any, n: int) -> tuple[list[str], list[list[str]], list[int]]:
    from jola_lens.tasks import choices_of, format_prompt, gold_choice_index, option_continuation
    from jola_lens.tasks.spec import TaskSpec, load_task_data

    spec = TaskSpec(task="demo", test_size=n)
    td = load_task_data(spec)
    prompts = [format_prompt(e, model.tokenizer, spec.style) for e in td.test]
    choices = [[option_continuation(c, spec.style) for c in choices_of(e)] for e in td.test]
    return prompts, choices, [gold_choice_index(e) for e in td.test]


def tiny_questions(n: int) -> tuple[list[str], list[list[str]], list[int]]:
    words = ["red", "blue", "green", "yes", "no"]
    prompts = [f"question : what is the {words[i % 5]} sea ? answer :" for i in range(n)]
    choices = [[" red", " blue sky", " green", " no"] for _ in range(n)]
    return prompts, choices, [i % 4 for i in range(n)]


def lm_eval_scores(hf_model: Any, tokenizer: Any, prompt_ids: list[list[int]], cont_ids: list[list[list[int]]],
                   batch_size: int) -> list[list[float]]:
    """lm-evaluation-harness's log-likelihood of each (prompt, option) pair, on the same token ids as ours.

    ``HFLM._loglikelihood_tokens`` is the harness's scoring (its batching, its forward, its log-softmax);
    its string front end (``loglikelihood``) would first move a prompt's trailing whitespace into the
    continuation (the chat prompts end in a newline), which scores another pair."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=hf_model, tokenizer=tokenizer, batch_size=batch_size, device="cpu", dtype="float32")
    reqs, owners = [], []
    for i, (p, cs) in enumerate(zip(prompt_ids, cont_ids)):
        for j, c in enumerate(cs):
            reqs.append((("", ""), list(p), list(c)))
            owners.append((i, j))
    res = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    out = [[0.0] * len(cs) for cs in cont_ids]
    for (i, j), (ll, _greedy) in zip(owners, res):
        out[i][j] = float(ll)
    return out


def picks(scores: list[list[float]], choices: list[list[str]]) -> tuple[list[int], list[int]]:
    acc = [max(range(len(s)), key=s.__getitem__) for s in scores]
    norm = [max(range(len(s)), key=lambda j, s=s, cs=cs: s[j] / max(len(cs[j]), 1)) for s, cs in zip(scores, choices)]
    return acc, norm


def _tl_forward(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with :mod:`jola_lens.eval.lean` off: the hooked backend through TransformerLens's own forward."""
    from jola_lens.eval import lean

    def call() -> Any:
        saved, lean.ENABLED = lean.ENABLED, False
        try:
            return fn()
        finally:
            lean.ENABLED = saved

    return call


def bench_scoring(model: Any, hf_model: Any, prompts: list[str], choices: list[list[str]], gold: list[int],
                  rounds: int, batch_size: int, hf_backend: Any = None) -> dict[str, Any]:
    from jola_lens.eval import score_token_continuations
    from jola_lens.eval.scoring import encode_continuations

    have_lm_eval = True
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        have_lm_eval = False
    p_ids, c_ids = encode_continuations(model.tokenizer, prompts, choices)  # the same tokens for both
    fns: dict[str, Callable[[], Any]] = {
        "jola_lens": lambda: score_token_continuations(model, p_ids, c_ids, batch_size=batch_size),
        "jola_lens_tl_forward": _tl_forward(lambda: score_token_continuations(model, p_ids, c_ids,
                                                                              batch_size=batch_size))}
    if hf_backend is not None:
        fns["jola_lens_hf_backend"] = lambda: score_token_continuations(hf_backend, p_ids, c_ids, batch_size=batch_size)
    if have_lm_eval:
        fns["lm_eval"] = lambda: lm_eval_scores(hf_model, model.tokenizer, p_ids, c_ids, batch_size)
    with torch.inference_mode():
        times, scores = _interleaved_keeping_results(fns, rounds)
    n = len(prompts)
    out: dict[str, Any] = {"n_questions": n, "batch_size": batch_size, "rounds": rounds,
                           "lm_eval_installed": have_lm_eval}
    out["flops"] = scoring_flops(model.cfg, p_ids, c_ids)
    for name, ts in times.items():
        med = statistics.median(ts)
        acc, norm = picks(scores[name], choices)
        out[name] = {"seconds": [round(t, 2) for t in ts], "median_s": round(med, 2),
                     "examples_per_s": round(n / med, 3), "gflops": round(out["flops"] / med / 1e9, 2),
                     "acc": sum(a == g for a, g in zip(acc, gold)) / n,
                     "acc_norm": sum(a == g for a, g in zip(norm, gold)) / n, "acc_picks": acc, "norm_picks": norm}
    if have_lm_eval:
        a, b = out["jola_lens"], out["lm_eval"]
        out["same_picks"] = a["acc_picks"] == b["acc_picks"] and a["norm_picks"] == b["norm_picks"]
        out["max_abs_score_diff"] = max(abs(x - y) for sa, sb in zip(scores["jola_lens"], scores["lm_eval"])
                                        for x, y in zip(sa, sb))
        out["speed_ratio"] = round(b["median_s"] / a["median_s"], 3)  # > 1: jola_lens faster
        for other in ("jola_lens_hf_backend", "jola_lens_tl_forward"):
            if other in out:
                h = out[other]
                h["same_picks"] = h["acc_picks"] == b["acc_picks"] and h["norm_picks"] == b["norm_picks"]
                h["speed_ratio"] = round(b["median_s"] / h["median_s"], 3)
    return out


def zero_jola_edit(model: Any) -> Any:
    """A JoLA editor on ``model`` whose edit vectors are all zero: its hooks run on every layer's ``hook_z``
    (the cost of an attached edit) and ``(1 + g * 0) * z + g * 0`` leaves z, and so the tokens, unchanged."""
    from jola_lens.model import JoLAModel

    jm = JoLAModel(model)
    with torch.no_grad():
        for edit in jm.edits.values():
            for vec in (edit.a, edit.m):
                if vec is not None:
                    vec.zero_()
    return jm.eval()


def bench_generation(model: Any, hf_model: Any, prompts: list[str], rounds: int, new_tokens: int,
                     hf_backend: Any = None) -> dict[str, Any]:
    """Greedy generation of ``new_tokens`` for every prompt in one batch: jola_lens on the hooked backend
    (base weights, which is also a merged edit's path), the same with a JoLA edit attached (hooks on),
    and on the hf backend where given; against ``transformers``' ``generate``."""
    from jola_lens.eval import generate_tokens
    from jola_lens.eval.forward import _encode

    tok = model.tokenizer
    ids = [_encode(tok, p) for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    def gen(m: Any) -> Callable[[], list[list[int]]]:
        return lambda: generate_tokens(m, ids, max_new_tokens=new_tokens, batch_size=len(ids), eos_token_ids=[],
                                       pad_token_id=pad)

    def hf() -> list[list[int]]:
        width = max(len(p) for p in ids)
        tokens = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for b, p in enumerate(ids):
            tokens[b, width - len(p):] = torch.tensor(p)
            mask[b, width - len(p):] = 1
        # EOS off on both sides without suppressing it (min_new_tokens would ban EOS and change the text)
        saved = hf_model.generation_config.eos_token_id
        hf_model.generation_config.eos_token_id = None
        try:
            out = hf_model.generate(input_ids=tokens, attention_mask=mask, do_sample=False, max_new_tokens=new_tokens,
                                    pad_token_id=pad, use_cache=True, eos_token_id=None)
        finally:
            hf_model.generation_config.eos_token_id = saved
        return [row[width:].tolist() for row in out]

    fns = {"jola_lens": gen(model), "jola_lens_edit_attached": gen(zero_jola_edit(model)),
           "jola_lens_tl_forward": _tl_forward(gen(model)), "hf_generate": hf}
    if hf_backend is not None:
        fns["jola_lens_hf_backend"] = gen(hf_backend)
    with torch.inference_mode():
        times, texts = _interleaved_keeping_results(fns, rounds)
    out: dict[str, Any] = {"n_prompts": len(ids), "new_tokens": new_tokens, "rounds": rounds,
                           "variants": [n for n in fns if n != "hf_generate"]}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"seconds": [round(t, 2) for t in ts], "median_s": round(med, 2),
                     "tokens_per_s": round(len(ids) * new_tokens / med, 2)}
    for name in out["variants"]:
        out[name]["identical_tokens"] = texts[name] == texts["hf_generate"]
        out[name]["rows_identical"] = sum(a == b for a, b in zip(texts[name], texts["hf_generate"]))
        out[name]["speed_ratio"] = round(out["hf_generate"]["median_s"] / out[name]["median_s"], 3)
    out["identical_tokens"] = all(out[n]["identical_tokens"] for n in out["variants"])  # every variant
    out["rows_identical"] = out["jola_lens"]["rows_identical"]
    out["speed_ratio"] = out["jola_lens"]["speed_ratio"]
    return out


# ---- driver --------------------------------------------------------------------------------------------
def load_models(quick: bool, tmp: Path, hf_backend: bool = False) -> tuple[Any, ...]:
    """The hooked model and the Hugging Face model of the same checkpoint (and jola_lens's hf backend on it,
    with ``hf_backend``)."""
    from transformers import AutoModelForCausalLM

    from jola_lens import load_model

    if quick:
        from jola_lens.testing import save_tiny_checkpoint

        ckpt = save_tiny_checkpoint(tmp / "tiny")
    else:
        from jola_lens.loading import bundled_checkpoint_dir

        ckpt = bundled_checkpoint_dir()
    model = load_model(str(ckpt))
    model.requires_grad_(False)
    hf_model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
    hf_model.requires_grad_(False)
    if not hf_backend:
        return model, hf_model
    backend = load_model(str(ckpt), backend="hf", verbose=False)
    backend.requires_grad_(False)
    return model, hf_model, backend


def run(quick: bool, n: int, rounds: int, batch_size: int, out_dir: Path) -> dict[str, Any]:
    import tempfile

    from jola_lens.settings import set_offline_env

    set_offline_env()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model, hf_model, hf_backend = load_models(quick, Path(tmp), hf_backend=True)
        cfg = model.cfg
        res: dict[str, Any] = {"model": cfg.model_name, "threads": torch.get_num_threads(),
                               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load_avg_start": os.getloadavg()}
        res["gemm"] = gemm_peak(cfg.d_model, cfg.d_mlp, cfg.d_vocab, rows=64 if quick else 512)
        _log(f"GEMM peak {res['gemm']['peak_gflops']} GFLOP/s {res['gemm']['shapes']}")
        prompts, choices, gold = tiny_questions(n) if quick else demo_questions(model, n)
        res["scoring"] = bench_scoring(model, hf_model, prompts, choices, gold, rounds, batch_size, hf_backend)
        res["generation"] = bench_generation(model, hf_model, prompts[:16], rounds, 16, hf_backend=hf_backend)
    peak = res["gemm"]["peak_gflops"]
    for name in ("jola_lens", "jola_lens_tl_forward", "jola_lens_hf_backend", "lm_eval"):
        if isinstance(res["scoring"].get(name), dict):
            res["scoring"][name]["share_of_peak"] = round(res["scoring"][name]["gflops"] / peak, 3) if peak else None
    res["load_avg_end"] = os.getloadavg()
    res["seconds"] = round(time.time() - started, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "side_by_side.json").write_text(json.dumps(res, indent=2) + "\n")
    (out_dir / "side_by_side.md").write_text(render(res))
    return res


def render(res: dict[str, Any]) -> str:
    s, g, gm = res["scoring"], res["generation"], res["gemm"]
    lines = [f"# Evaluation side by side ({res['model']}, {res['threads']} threads, {res['date']})", "",
             f"Load average at start {[round(x, 2) for x in res['load_avg_start']]}, at end "
             f"{[round(x, 2) for x in res['load_avg_end']]}; took {res['seconds']:.0f} s.", "",
             "| measurement | value | anchor | ratio (anchor time / ours) |", "|---|---|---|---|",
             f"| GEMM peak, fp32 at the model's shapes ({gm['rows']} rows) | {gm['peak_gflops']} GFLOP/s | "
             f"{', '.join(f'{k}: {v}' for k, v in gm['shapes'].items())} | - |"]
    ours = s["jola_lens"]
    if s["lm_eval_installed"]:
        th = s["lm_eval"]
        lines.append(f"| option scoring, {s['n_questions']} questions, batch {s['batch_size']}: examples/s | "
                     f"{ours['examples_per_s']} | lm-eval HFLM {th['examples_per_s']} | {s['speed_ratio']}x |")
        lines.append(f"| option scoring: acc / acc_norm | {ours['acc']:.4f} / {ours['acc_norm']:.4f} | "
                     f"{th['acc']:.4f} / {th['acc_norm']:.4f} | same picks: {s['same_picks']} "
                     f"(max score difference {s['max_abs_score_diff']:.2e}) |")
    else:
        lines.append(f"| option scoring, {s['n_questions']} questions: examples/s | {ours['examples_per_s']} | "
                     "lm-eval not installed | - |")
    for key, what in (("jola_lens_tl_forward", "on the hooked backend through TransformerLens's own forward "
                       "(JOLA_LENS_LEAN=0)"), ("jola_lens_hf_backend", "on the hf backend")):
        hb = s.get(key)
        if not hb:
            continue
        lines.append(f"| option scoring, the same {what}: examples/s | {hb['examples_per_s']} | "
                     + (f"lm-eval HFLM {s['lm_eval']['examples_per_s']} | {hb['speed_ratio']}x (same picks: "
                        f"{hb['same_picks']}) |" if s["lm_eval_installed"] else "- | - |"))
        lines.append(f"| the same: achieved GFLOP/s and share of the GEMM peak | {hb['gflops']} "
                     f"({hb['share_of_peak'] or 0:.0%}) | - | - |")
    lines.append(f"| option scoring: achieved GFLOP/s (FLOPs {s['flops'] / 1e9:.1f} G) and share of the GEMM peak | "
                 f"{ours['gflops']} ({ours['share_of_peak'] or 0:.0%}) | "
                 + (f"lm-eval on the same FLOP count: {s['lm_eval']['gflops']}" if s["lm_eval_installed"] else "-")
                 + " | - |")
    label = {"jola_lens": "hooked backend (base or merged weights)",
             "jola_lens_tl_forward": "hooked backend through TransformerLens's own forward (JOLA_LENS_LEAN=0)",
             "jola_lens_edit_attached": "hooked backend, JoLA edit attached (zero edit: hooks run)",
             "jola_lens_hf_backend": "hf backend"}
    for name in g.get("variants", ["jola_lens"]):
        v = g[name]
        lines.append(f"| greedy generation, {g['n_prompts']} prompts x {g['new_tokens']} tokens in one batch, "
                     f"{label.get(name, name)}: tokens/s | {v['tokens_per_s']} | HF generate "
                     f"{g['hf_generate']['tokens_per_s']} | {v['speed_ratio']}x |")
        lines.append(f"| the same: identical tokens | {v['identical_tokens']} ({v['rows_identical']} of "
                     f"{g['n_prompts']} rows) | - | - |")
    lines += ["", "Medians over interleaved rounds; every timing in side_by_side.json.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random Llama, a few questions (seconds)")
    p.add_argument("--n", type=int, default=None, help="questions to score (default 300; --quick 8)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; --quick 1)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    a = p.parse_args(argv)
    n = a.n or (8 if a.quick else 300)
    rounds = a.rounds or (1 if a.quick else 2)
    res = run(a.quick, n, rounds, a.batch_size, a.out)
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
