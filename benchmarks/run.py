"""Benchmarks: what JoLA costs over the frozen model, measured in one process.

Usage::

    python -m benchmarks.run                  # bundled SmolLM2-135M-Instruct (a few minutes on 2 CPU cores)
    python -m benchmarks.run --quick          # tiny random model, 2 repeats: proves the code runs (seconds)
    python -m benchmarks.run --demo-results demo_out/results.json --out benchmarks/results

Writes ``<out>/latest.json`` (every number, the raw timings and the machine) and ``<out>/latest.md``
(a table: measurement, value, target, pass/fail), and prints the table.

Method. The variants of a comparison run in the same process on the same inputs. Each is called
once to warm up; then they are interleaved round by round (A B, B A, A B, ...: the order flips each
round so neither variant always runs first), and the variants of one round use the same batch.
Times are ``time.perf_counter`` wall-clock seconds; a variant's value is its median over the rounds
and a ratio is the ratio of two medians (the median of the per-round ratios is kept as well).
Inference runs under ``torch.inference_mode()``. Peak RSS is read in a fresh subprocess per workload.

1. Training step, batch 8 of the bundled ARC-Easy sample as the demo tokenises it (``TaskSpec(task="demo")``:
   its prompt style and target), in the trainer's length-grouped batch order. ``jola``:
   ``JoLATrainer._train_step`` (hooks, answer-only loss, gate penalty, backward, clipping, AdamW,
   schedulers, gate log). ``jola_bare``: the
   same forward, penalty, backward and AdamW step without the trainer's bookkeeping. ``floor``: the
   frozen model with no edit hooks, the same answer-only loss, and one dummy scalar parameter
   multiplied into ``hook_z`` of the first edited layer, so that autograd runs the same backward
   through the network as JoLA does. (A scalar on the final residual would not do: its gradient
   needs no backward through the blocks, which would make the floor unrealistically cheap.)
2. Inference: a full forward (logits) of batches of 8 test prompts, and greedy generation of 16
   tokens (KV cache, EOS disabled so every variant makes exactly 16) for 8 prompts, with the base
   model, the JoLA-hooked model, and the merged model (``JoLAModel.merge()``).
3. Evaluation throughput (examples/s) of the hooked model: label-likelihood scoring
   (``label_likelihood_predict``) and generation (``generate_greedy``, 16 tokens, stop at a newline),
   batch 16 against one example at a time.
4. Peak RSS (``VmHWM``) of a short training run and of an evaluation, each in a subprocess
   (``python -m benchmarks.run --child train|eval``); model loading included. And the peak over 3
   training steps on one batch of 8 (``--child step_hooked|step_hf|step_floor_hf``): JoLA on the hooked and
   the hf backend, and the plain Hugging Face floor, against the original code's figure on that batch.
5. Trainable parameters, their share of the model, the number of heads, and the open gates after
   training from a demo ``results.json``.
6. The demo's wall time, ``demo_seconds`` from a demo ``results.json`` (``make demo`` writes one).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "benchmarks/results"
DEFAULT_DEMO_RESULTS = "demo_out/results.json"

# The original code's (``jola==0.0.1``, RoPE patched) peak over training steps on the same 8-example batch,
# measured side by side with jola_lens on 2026-12-01 (issue 25: VmHWM of the worker, 1 thread); not re-run
# here (it needs the original repository's modified transformers modelling files).
ORIGINAL_CODE_STEP_PEAK_MB = 1667.0

# key -> (comparison, threshold)
TARGETS: dict[str, tuple[str, float]] = {
    "train_step_ratio": ("<=", 1.10),
    "hooked_forward_ratio": ("<=", 1.05),
    "merged_forward_ratio": ("<=", 1.01),
    # batch 16 >= 4x one at a time was retired by issue 25 (2 cores: its profiled ceiling is about 2x)
    "train_peak_rss_mb": ("<", 4096.0),
    # issue 25: a training step's peak no higher than the original code's on the same batch
    "step_peak_rss_mb": ("<=", ORIGINAL_CODE_STEP_PEAK_MB),
    "demo_seconds": ("<", 360.0),
}

REQUIRED_KEYS = (
    "train_step_ratio",
    "hooked_forward_ratio",
    "merged_forward_ratio",
    "hooked_generate_ratio",
    "batched_eval_speedup",
    "train_peak_rss_mb",
    "demo_seconds",
    "trainable_params",
)


@dataclasses.dataclass
class Settings:
    """Sizes and repeat counts of one run (``full()`` for the bundled model, ``quick()`` for the tiny one)."""

    quick: bool
    train_repeats: int
    forward_repeats: int
    generate_repeats: int
    likelihood_repeats: int
    generation_eval_repeats: int
    n_likelihood: int  # examples scored per label-likelihood throughput repeat
    n_generation: int  # prompts generated per generation throughput repeat
    rss_train_steps: int
    rss_valid_examples: int
    rss_eval_examples: int
    batch_size: int = 8
    eval_batch_size: int = 16
    new_tokens: int = 16
    warmup: int = 1

    @classmethod
    def full(cls) -> "Settings":
        # Sized for about 5 minutes on 2 idle cores: a SmolLM2 training step of batch 8 is ~2-3 s there.
        return cls(quick=False, train_repeats=6, forward_repeats=8, generate_repeats=5, likelihood_repeats=3,
                   generation_eval_repeats=2, n_likelihood=32, n_generation=16, rss_train_steps=6,
                   rss_valid_examples=16, rss_eval_examples=16)

    @classmethod
    def quick_(cls) -> "Settings":
        return cls(quick=True, train_repeats=3, forward_repeats=3, generate_repeats=2, likelihood_repeats=2,
                   generation_eval_repeats=2, n_likelihood=16, n_generation=8, rss_train_steps=2,
                   rss_valid_examples=8, rss_eval_examples=8)


def settings_for(quick: bool) -> Settings:
    return Settings.quick_() if quick else Settings.full()


# =============================================================================================
# Models and data
# =============================================================================================
class ByteTokenizer:
    """A stand-in tokenizer for the tiny random model: one id per UTF-8 byte, then pad, EOS and BOS.

    It has what ``jola_lens.tasks`` and ``jola_lens.eval`` call on a tokenizer, so the quick run
    goes through the same code paths as the bundled model without needing its files.

    Example:
        >>> tok = ByteTokenizer()
        >>> tok("hi", add_special_tokens=False)["input_ids"], tok.decode([104, 105, tok.eos_token_id])
        ([104, 105], 'hi')
    """

    pad_token_id, eos_token_id, bos_token_id = 256, 257, 258
    pad_token, eos_token, bos_token = "<pad>", "<eos>", "<bos>"
    vocab_size = 259
    chat_template = None
    padding_side = "right"

    def __call__(self, texts: str | list[str], add_special_tokens: bool = False) -> dict[str, Any]:
        if isinstance(texts, str):
            return {"input_ids": list(texts.encode("utf-8"))}
        return {"input_ids": [list(t.encode("utf-8")) for t in texts]}

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


def tiny_model() -> Any:
    """A tiny Llama-shaped random HookedTransformer (RMS norm, rotary, gated SiLU MLP, GQA) with a byte tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=3, d_model=32, n_ctx=1024, d_head=8, n_heads=4, n_key_value_heads=2, d_mlp=48,
        d_vocab=ByteTokenizer.vocab_size, act_fn="silu", normalization_type="RMS",
        positional_embedding_type="rotary", rotary_dim=8, gated_mlp=True, final_rms=True,
        default_prepend_bos=False, seed=0, model_name="tiny-random",
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "HookedTransformer is deprecated" (TL 3.x)
        model = HookedTransformer(cfg)
    model.tokenizer = ByteTokenizer()
    return model.eval()


def build_model(quick: bool) -> Any:
    if quick:
        return tiny_model()
    from jola_lens.loading import load_model

    return load_model("smollm2", verbose=False)


@dataclasses.dataclass
class Inputs:
    spec: Any
    td: Any
    train_tok: list[dict[str, Any]]
    valid_tok: list[dict[str, Any]]
    prompts: list[str]  # test prompts, formatted as the demo formats them
    prepend_bos: bool


def load_inputs(model: Any, quick: bool) -> Inputs:
    """The demo's data, prompt style and target, tokenised once."""
    from jola_lens import tasks as D
    from jola_lens.experiment import TaskSpec, load_task_data, tokenize_splits

    spec = TaskSpec(task="demo", max_length=1000 if quick else 400)  # bytes are ~4x tokens
    td = load_task_data(spec)
    prepend_bos = bool(getattr(model.cfg, "default_prepend_bos", False))
    train_tok, valid_tok = tokenize_splits(model.tokenizer, td, spec, prepend_bos)
    prompts = [D.format_prompt(e, model.tokenizer, spec.style) for e in td.test]
    return Inputs(spec, td, train_tok, valid_tok, prompts, prepend_bos)


def _pad_id(model: Any) -> int:
    tok = model.tokenizer
    return int(tok.pad_token_id) if tok.pad_token_id is not None else 0


def _length_stats(batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    widths = [int(b["input_ids"].shape[1]) for b in batches]
    real = [float(b["attention_mask"].sum(1).float().mean()) for b in batches]
    return {"batches": len(batches), "mean_padded_width": statistics.mean(widths), "max_padded_width": max(widths),
            "mean_tokens_per_row": statistics.mean(real)}


# =============================================================================================
# Timing
# =============================================================================================
def interleaved(
    variants: dict[str, Callable[[int], Any]],
    repeats: int,
    warmup: int = 1,
    warmup_fns: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, list[float]]:
    """Per-variant wall times: a warm-up call each, then ``repeats`` rounds, the order flipping each round.

    ``variants[name](r)`` runs round ``r`` (all variants of a round get the same ``r``, hence the same
    input). ``warmup_fns`` replaces the warm-up calls (e.g. a smaller input for a slow variant).

    Example:
        >>> t = interleaved({"a": lambda r: None, "b": lambda r: None}, repeats=3)
        >>> sorted(t), [len(v) for v in t.values()]
        (['a', 'b'], [3, 3])
    """
    names = list(variants)
    for w in range(warmup):
        for n in names:
            if warmup_fns and n in warmup_fns:
                warmup_fns[n]()
            else:
                variants[n](w)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            variants[n](r)
            times[n].append(time.perf_counter() - t0)
    return times


def timing_summary(ts: list[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "repeats_s": list(ts)}


def ratio_of_medians(times: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(times[a]) / statistics.median(times[b])


def paired_ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of ``a / b`` within the round (robust to slow drifts in machine load)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def _log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# =============================================================================================
# 1. Training step
# =============================================================================================
def bench_train(model: Any, jm: Any, inp: Inputs, st: Settings) -> dict[str, Any]:
    from jola_lens.recipes import DEMO_DEFAULTS
    from jola_lens.schedule import gate_penalty
    from jola_lens.tasks import length_grouped_batches
    from jola_lens.train import JoLATrainer, TrainConfig, answer_loss, collate

    pad = _pad_id(model)
    lengths = [len(e["input_ids"]) for e in inp.train_tok]
    # the trainer's first-epoch batches (length-grouped, seed 42), full ones only
    order = [b for b in length_grouped_batches(lengths, st.batch_size, seed=42) if len(b) == st.batch_size]
    batches = [collate([inp.train_tok[i] for i in idx], pad) for idx in order]
    tc = TrainConfig(**DEMO_DEFAULTS, seed=42)
    trainer = JoLATrainer(jm, inp.train_tok, None, tc, progress=False, pad_id=pad)
    jm.train()
    torch.manual_seed(0)
    n_heads = model.cfg.n_heads

    def jola_step(r: int) -> None:
        trainer._train_step(batches[r % len(batches)])

    bare_opt = torch.optim.AdamW(jm.edit_parameters(), lr=tc.lr)

    def jola_bare(r: int) -> None:
        b = batches[r % len(batches)]
        with jm.applied():
            ce = answer_loss(model, b["input_ids"], b["labels"], b["attention_mask"])
        pen = sum(gate_penalty(e.prob_open(), 1e-3, tc.penalty, n_heads) for e in jm.edits.values())
        bare_opt.zero_grad(set_to_none=True)
        (ce + pen).backward()
        bare_opt.step()

    site = "attn" if "attn" in jm.edits else next(iter(jm.edits))
    first = min(jm.edits[site].layers)
    floor_hook = f"blocks.{first}.attn.hook_z" if site == "attn" else f"blocks.{first}.hook_mlp_out"
    dummy = torch.nn.Parameter(torch.ones((), device=next(model.parameters()).device))
    floor_opt = torch.optim.AdamW([dummy], lr=1e-3)

    def scale(z: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return z * dummy

    def floor(r: int) -> None:
        b = batches[r % len(batches)]
        with model.hooks(fwd_hooks=[(floor_hook, scale)]):
            loss = answer_loss(model, b["input_ids"], b["labels"], b["attention_mask"])
        floor_opt.zero_grad(set_to_none=True)
        loss.backward()
        floor_opt.step()

    times = interleaved({"floor": floor, "jola": jola_step, "jola_bare": jola_bare}, st.train_repeats, st.warmup)
    jm.eval()
    used = batches[: max(st.train_repeats, st.warmup)]
    return {
        "train_step_ratio": ratio_of_medians(times, "jola", "floor"),
        "train_step_ratio_paired": paired_ratio(times, "jola", "floor"),
        "train_step_bare_ratio": ratio_of_medians(times, "jola_bare", "floor"),
        "timings": {f"train_step_{k}": timing_summary(v) for k, v in times.items()},
        "train_batches": _length_stats(used),
        "floor_dummy_site": floor_hook,
    }


# =============================================================================================
# 2. Inference: forward and generation, base vs hooked vs merged
# =============================================================================================
def _prompt_batches(
    model: Any, prompts: list[str], bs: int, n: int, prepend_bos: bool
) -> list[dict[str, torch.Tensor]]:
    from jola_lens.train import collate

    tok = model.tokenizer
    bos = [int(tok.bos_token_id)] if prepend_bos else []
    rows = [{"input_ids": bos + list(tok(p, add_special_tokens=False)["input_ids"])} for p in prompts[: bs * n]]
    for r in rows:
        r["labels"] = r["input_ids"]
    return [collate(rows[i : i + bs], _pad_id(model)) for i in range(0, len(rows), bs) if len(rows[i : i + bs]) == bs]


def bench_inference(model: Any, jm: Any, merged: Any, inp: Inputs, st: Settings) -> dict[str, Any]:
    from jola_lens import eval as E

    jm.eval()
    n_fwd = max(st.forward_repeats, st.warmup)
    fb = _prompt_batches(model, inp.prompts, st.batch_size, n_fwd, inp.prepend_bos)

    def plain(m: Any) -> Callable[[int], Any]:
        def run(r: int) -> None:
            b = fb[r % len(fb)]
            with torch.inference_mode():
                m(b["input_ids"], attention_mask=b["attention_mask"])
        return run

    def hooked(r: int) -> None:
        b = fb[r % len(fb)]
        with jm.applied(), torch.inference_mode():
            model(b["input_ids"], attention_mask=b["attention_mask"])

    ftimes = interleaved({"base": plain(model), "hooked": hooked, "merged": plain(merged)}, st.forward_repeats,
                         st.warmup)
    _log(f"forward: base {statistics.median(ftimes['base']):.3f} s, "
         f"hooked {statistics.median(ftimes['hooked']):.3f} s, merged {statistics.median(ftimes['merged']):.3f} s")

    n_gen = max(st.generate_repeats, st.warmup)
    groups = [inp.prompts[i * st.batch_size : (i + 1) * st.batch_size] for i in range(n_gen)]

    def gen(m: Any) -> Callable[[int], Any]:
        def run(r: int) -> None:
            with torch.inference_mode():
                E.generate_greedy(m, groups[r % len(groups)], max_new_tokens=st.new_tokens, batch_size=st.batch_size,
                                  eos_token_ids=[], prepend_bos=inp.prepend_bos)
        return run

    gtimes = interleaved({"base": gen(model), "hooked": gen(jm), "merged": gen(merged)}, st.generate_repeats, st.warmup)
    _log(f"generate {st.new_tokens} x {st.batch_size}: base {statistics.median(gtimes['base']):.3f} s, "
         f"hooked {statistics.median(gtimes['hooked']):.3f} s, merged {statistics.median(gtimes['merged']):.3f} s")
    timings = {f"forward_{k}": timing_summary(v) for k, v in ftimes.items()}
    timings.update({f"generate_{k}": timing_summary(v) for k, v in gtimes.items()})
    return {
        "hooked_forward_ratio": ratio_of_medians(ftimes, "hooked", "base"),
        "merged_forward_ratio": ratio_of_medians(ftimes, "merged", "base"),
        "hooked_forward_ratio_paired": paired_ratio(ftimes, "hooked", "base"),
        "merged_forward_ratio_paired": paired_ratio(ftimes, "merged", "base"),
        "hooked_generate_ratio": ratio_of_medians(gtimes, "hooked", "base"),
        "merged_generate_ratio": ratio_of_medians(gtimes, "merged", "base"),
        "hooked_generate_ratio_paired": paired_ratio(gtimes, "hooked", "base"),
        "timings": timings,
        "forward_batches": _length_stats(fb[:n_fwd]),
    }


# =============================================================================================
# 3. Evaluation throughput: batched vs one at a time
# =============================================================================================
def bench_eval(jm: Any, inp: Inputs, st: Settings) -> dict[str, Any]:
    from jola_lens import eval as E
    from jola_lens import tasks as D

    test = inp.td.test[: st.n_likelihood]
    prompts = inp.prompts[: st.n_likelihood]
    labels = D.label_set(inp.td.train + inp.td.test) or ["answer1", "answer2", "answer3", "answer4"]
    per = [labels[: max(len(D.choices_of(e)), 1)] for e in test]
    bs = st.eval_batch_size
    kw = dict(prepend_bos=inp.prepend_bos)
    warm = slice(0, min(bs, len(prompts)))
    ll_out: dict[str, Any] = {}

    def ll(batch_size: int, name: str) -> Callable[[int], Any]:
        def run(r: int) -> None:
            ll_out[name] = E.label_likelihood_predict(jm, prompts, per, batch_size=batch_size, **kw).predictions
        return run

    ltimes = interleaved(
        {"batched": ll(bs, "batched"), "single": ll(1, "single")}, st.likelihood_repeats, st.warmup,
        warmup_fns={n: (lambda b=b: E.label_likelihood_predict(jm, prompts[warm], per[warm], batch_size=b, **kw))
                    for n, b in (("batched", bs), ("single", 1))},
    )
    n_ll = len(prompts)
    _log(f"label likelihood, {n_ll} examples: batch {bs} {statistics.median(ltimes['batched']):.2f} s, "
         f"one at a time {statistics.median(ltimes['single']):.2f} s")

    ceiling = gemm_bound(lambda b: E.label_likelihood_predict(jm, prompts, per, batch_size=b, **kw), bs)
    _log(f"label likelihood: matrix products {100 * ceiling['gemm_share_single']:.0f}% of one-at-a-time CPU time, "
         f"{ceiling['gemm_speedup']:.2f}x faster batched; batch {bs} can be at most {ceiling['ceiling']:.2f}x faster")

    gprompts = inp.prompts[: st.n_generation]
    gen_out: dict[str, Any] = {}
    gkw = dict(max_new_tokens=st.new_tokens, stop_strings=["\n"], prepend_bos=inp.prepend_bos)

    def gen(batch_size: int, name: str) -> Callable[[int], Any]:
        def run(r: int) -> None:
            gen_out[name] = E.generate_greedy(jm, gprompts, batch_size=batch_size, **gkw)
        return run

    gwarm = gprompts[: min(4, len(gprompts))]
    gtimes = interleaved(
        {"batched": gen(bs, "batched"), "single": gen(1, "single")}, st.generation_eval_repeats, st.warmup,
        warmup_fns={n: (lambda b=b: E.generate_greedy(jm, gwarm, batch_size=b, **gkw))
                    for n, b in (("batched", bs), ("single", 1))},
    )
    n_gen = len(gprompts)
    _log(f"generation eval, {n_gen} prompts: batch {bs} {statistics.median(gtimes['batched']):.2f} s, "
         f"one at a time {statistics.median(gtimes['single']):.2f} s")
    timings = {f"label_likelihood_{k}": timing_summary(v) for k, v in ltimes.items()}
    timings.update({f"generation_eval_{k}": timing_summary(v) for k, v in gtimes.items()})
    eps = lambda t, n: n / statistics.median(t)  # noqa: E731
    return {
        "batched_eval_speedup": ratio_of_medians(ltimes, "single", "batched"),
        "label_likelihood_examples_per_s": {"batched": eps(ltimes["batched"], n_ll),
                                            "single": eps(ltimes["single"], n_ll)},
        "label_likelihood_same_predictions": ll_out.get("batched") == ll_out.get("single"),
        "batched_eval_gemm_bound": ceiling,
        "generation_batched_speedup": ratio_of_medians(gtimes, "single", "batched"),
        "generation_examples_per_s": {"batched": eps(gtimes["batched"], n_gen), "single": eps(gtimes["single"], n_gen)},
        "generation_same_outputs": gen_out.get("batched") == gen_out.get("single"),
        "eval_sizes": {"label_likelihood_examples": n_ll, "generation_prompts": n_gen, "batch_size": bs,
                       "max_new_tokens": st.new_tokens},
        "timings": timings,
    }


# matrix-product operators of a forward pass (self time; their callers add no compute of their own)
GEMM_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "aten::linear", "aten::matmul")


def gemm_bound(run: Callable[[int], Any], batch_size: int) -> dict[str, float]:
    """What batching can gain at this batch size, from one profiled pass one at a time and one batched.

    Batching removes per-call work (Python, hooks, small ops) and can make the matrix products
    cheaper per token (larger matrices use the threads and caches better), but it cannot take
    the batched pass below the CPU time of its own matrix products. So ``ceiling`` =
    one-at-a-time CPU time / batched matrix-product CPU time bounds the speedup at this batch
    size (the profiler's overhead falls on the small ops, so the bound is generous). Returned:
    each pass's CPU seconds in matrix products and in total, the one-at-a-time matrix-product
    share, the matrix products' own speedup (``gemm_speedup``), the profiled CPU-time speedup
    (``cpu_speedup``) and the ceiling.
    """
    single, batched = profiled_cpu_seconds(run, 1), profiled_cpu_seconds(run, batch_size)
    return gemm_bound_from(single, batched)


def profiled_cpu_seconds(run: Callable[[int], Any], batch_size: int) -> tuple[float, float]:
    """(matrix-product CPU seconds, total CPU seconds) of one profiled ``run(batch_size)``."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        run(batch_size)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    gemm = sum(e.self_cpu_time_total for e in events if e.key in GEMM_OPS) / 1e6
    return gemm, total


def gemm_bound_from(single: tuple[float, float], batched: tuple[float, float]) -> dict[str, float]:
    """:func:`gemm_bound`'s arithmetic on two (matrix-product s, total s) measurements."""
    out: dict[str, float] = {}
    for name, (gemm, total) in (("single", single), ("batched", batched)):
        out[f"gemm_s_{name}"], out[f"total_cpu_s_{name}"] = gemm, total
    out["gemm_share_single"] = out["gemm_s_single"] / out["total_cpu_s_single"]
    out["gemm_speedup"] = out["gemm_s_single"] / out["gemm_s_batched"]
    out["cpu_speedup"] = out["total_cpu_s_single"] / out["total_cpu_s_batched"]
    out["ceiling"] = out["total_cpu_s_single"] / out["gemm_s_batched"]
    return out


# =============================================================================================
# 4. Peak RSS, each workload in its own process
# =============================================================================================
def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB.

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this process's own memory
    map. Not ``ru_maxrss``: Linux carries that across fork + exec, so a child started by a
    large parent reports the parent's peak (the benchmark's children did: 3,810 MB each, to the
    byte). Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def current_rss_mb() -> float | None:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return None


def child_main(kind: str, quick: bool) -> dict[str, Any]:
    """One workload in this (fresh) process; returns its memory figures."""
    from jola_lens import tasks as D
    from jola_lens.experiment import evaluate_task
    from jola_lens.model import JoLAModel
    from jola_lens.recipes import DEMO_DEFAULTS
    from jola_lens.train import JoLATrainer, TrainConfig

    st = settings_for(quick)
    t0 = time.perf_counter()
    model = build_model(quick)
    inp = load_inputs(model, quick)
    out: dict[str, Any] = {"kind": kind, "rss_after_load_mb": current_rss_mb(), "peak_rss_after_load_mb": peak_rss_mb()}
    jm = JoLAModel(model)
    t1 = time.perf_counter()
    if kind == "train":
        train = inp.train_tok[: st.rss_train_steps * st.batch_size]
        valid = inp.valid_tok[: st.rss_valid_examples]
        tc = TrainConfig(**{**DEMO_DEFAULTS, "epochs": 1}, seed=42)
        res = JoLATrainer(jm, train, valid, tc, progress=False, pad_id=_pad_id(model)).train()
        out.update(steps=res.steps, valid_examples=len(valid), batch_size=st.batch_size)
    elif kind == "eval":
        td = D.TaskData(train=inp.td.train, valid=inp.td.valid, test=inp.td.test[: st.rss_eval_examples], name="bench")
        r = evaluate_task(jm, td, inp.spec, generation=True, progress=False)
        out.update(examples=r["n"], batch_size=inp.spec.eval_batch_size, scoring="choice likelihood + generation")
    else:
        raise ValueError(f"unknown child workload {kind!r}")
    out.update(peak_rss_mb=peak_rss_mb(), rss_end_mb=current_rss_mb(), load_seconds=t1 - t0,
               work_seconds=time.perf_counter() - t1)
    return out


STEP_CHILDREN = ("step_hooked", "step_hf", "step_floor_hf")


def _step_checkpoint(quick: bool, tmp: Path) -> Path:
    if quick:
        from jola_lens.testing import save_tiny_checkpoint

        return Path(save_tiny_checkpoint(tmp / "tiny"))
    from jola_lens.loading import bundled_checkpoint_dir

    return Path(bundled_checkpoint_dir())


def step_child_main(kind: str, quick: bool, steps: int = 3) -> dict[str, Any]:
    """Peak RSS over ``steps`` training steps on ONE batch of 8 (the trainer's first, seed 42), in this fresh
    process: JoLA on the hooked or the hf backend, or the plain Hugging Face floor (the frozen
    ``AutoModelForCausalLM``, one dummy scalar on layer 0's output-projection input, the same answer-only
    loss, AdamW), the workload the original code's figure is for."""
    import tempfile

    from jola_lens.tasks import length_grouped_batches
    from jola_lens.train import collate

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _step_checkpoint(quick, Path(tmp))
        if kind == "step_floor_hf":
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32)
            model.requires_grad_(False)
            model.tokenizer = AutoTokenizer.from_pretrained(str(ckpt))
            model.cfg = None
        else:
            from jola_lens.loading import load_model

            model = load_model(str(ckpt), backend="hooked" if kind == "step_hooked" else "hf", verbose=False)
        out: dict[str, Any] = {"kind": kind, "rss_after_load_mb": current_rss_mb(),
                               "peak_rss_after_load_mb": peak_rss_mb()}
        inp = load_inputs(model, quick)
        pad = _pad_id(model)
        lengths = [len(e["input_ids"]) for e in inp.train_tok]
        first = next(b for b in length_grouped_batches(lengths, 8, seed=42) if len(b) == 8)
        batch = collate([inp.train_tok[i] for i in first], pad)
        if kind == "step_floor_hf":
            dummy = torch.nn.Parameter(torch.ones(()))
            opt = torch.optim.AdamW([dummy], lr=1e-3)
            o_proj = model.model.layers[0].self_attn.o_proj
            o_proj.register_forward_pre_hook(lambda mod, args: (args[0] * dummy,) + tuple(args[1:]))

            def step() -> None:
                ids, mask = batch["input_ids"], batch["attention_mask"]
                hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
                targets = batch["labels"][:, 1:]
                b, t = (targets != -100).nonzero(as_tuple=True)
                logits = model.lm_head(hidden[b, t])
                loss = torch.nn.functional.cross_entropy(logits.float(), targets[b, t])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        else:
            from jola_lens.model import JoLAModel
            from jola_lens.recipes import DEMO_DEFAULTS
            from jola_lens.train import JoLATrainer, TrainConfig

            jm = JoLAModel(model)
            trainer = JoLATrainer(jm, inp.train_tok, None, TrainConfig(**DEMO_DEFAULTS, seed=42), progress=False,
                                  pad_id=pad)
            jm.train()

            def step() -> None:
                trainer._train_step(batch)
        for _ in range(steps):
            step()
        out.update(peak_rss_mb=peak_rss_mb(), rss_end_mb=current_rss_mb(), steps=steps,
                   batch_shape=list(batch["input_ids"].shape))
    return out


def run_child(kind: str, quick: bool, threads: int | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.run", "--child", kind] + (["--quick"] if quick else [])
    cmd += ["--threads", str(threads)] if threads is not None else []
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.setdefault(k, "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=900)
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark child {kind!r} failed (exit {p.returncode}): " + " | ".join(tail))
    return json.loads(lines[-1])


# =============================================================================================
# 5-6. Parameters, demo results
# =============================================================================================
def parameter_counts(model: Any, jm: Any) -> dict[str, Any]:
    total = sum(p.numel() for p in model.parameters())
    trainable = jm.n_trainable_parameters()
    return {
        "trainable_params": trainable,
        "model_params": total,
        "trainable_share": trainable / total,
        "n_heads_total": model.cfg.n_layers * model.cfg.n_heads,
        "n_layers": model.cfg.n_layers,
        "heads_per_layer": model.cfg.n_heads,
    }


def demo_note() -> str:
    return (f"no demo results: run `make demo` (writes {DEFAULT_DEMO_RESULTS}), "
            f"then `python -m benchmarks.run --demo-results {DEFAULT_DEMO_RESULTS}`")


def read_demo_results(path: str | Path | None) -> dict[str, Any]:
    """``demo_seconds`` and the training summary from a demo ``results.json``; nulls and a note if there is none.

    Example:
        >>> read_demo_results(None)["demo_seconds"] is None
        True
    """
    if path is None or not Path(path).is_file():
        return {"demo_seconds": None, "demo_results_path": str(path) if path else None, "open_gates": None,
                "note": demo_note()}
    r = json.loads(Path(path).read_text())
    return {
        "demo_seconds": r.get("demo_seconds"),
        "demo_results_path": str(path),
        "open_gates": r.get("open_gates"),
        "n_gates": r.get("n_gates"),
        "demo_train_seconds": r.get("train_seconds"),
        "demo_train_steps": (r.get("train") or {}).get("steps"),
        "demo_zero_shot_eval_seconds": (r.get("zero_shot") or {}).get("seconds"),
        "demo_jola_eval_seconds": (r.get("jola") or {}).get("seconds"),
        "demo_trainable_params": r.get("trainable_params"),
    }


def resolve_demo_path(arg: str | None, quick: bool) -> Path | None:
    if arg:
        return Path(arg)
    if quick:
        return None  # the quick run has no demo: its numbers are for another model
    for p in (Path(DEFAULT_DEMO_RESULTS), REPO_ROOT / DEFAULT_DEMO_RESULTS):
        if p.is_file():
            return p
    return None


# =============================================================================================
# Machine
# =============================================================================================
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def busy_processes(min_cpu: float = 30.0) -> list[dict[str, Any]] | None:
    """Other processes using at least ``min_cpu`` % CPU over half a second (needs psutil)."""
    try:
        import psutil
    except ImportError:
        return None
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.pid != me]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(0.5)
    out = []
    for p in procs:
        try:
            c = p.cpu_percent(None)
            if c >= min_cpu:
                out.append({"pid": p.pid, "name": p.info["name"], "cpu_percent": c,
                            "command": " ".join(p.cmdline()[:4])[:100]})
        except psutil.Error:
            pass
    return sorted(out, key=lambda d: -d["cpu_percent"])


def machine_info() -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        mem = None
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory_mb": mem,
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "transformer_lens_version": version("transformer-lens"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# =============================================================================================
# Report
# =============================================================================================
def judge(key: str, value: Any) -> bool | None:
    if key not in TARGETS or value is None:
        return None
    op, thr = TARGETS[key]
    return {"<=": value <= thr, ">=": value >= thr, "<": value < thr}[op]


def _target_text(key: str) -> str:
    if key not in TARGETS:
        return "-"
    op, thr = TARGETS[key]
    unit = " MB" if key.endswith("_mb") else " s" if key.endswith("_seconds") else "x"
    thr_s = f"{thr:,.0f}" if unit != "x" else f"{thr:g}"
    return f"{op} {thr_s}{unit}"


def _ms(t: dict[str, Any]) -> str:
    return f"{1000 * t['median_s']:.0f} ms" if t["median_s"] < 10 else f"{t['median_s']:.1f} s"


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measurement, value, target, result) rows of the Markdown table."""
    t = res["timings"]
    quick = res["quick"]
    rows: list[tuple[str, str, str, str]] = []

    def add(label: str, key: str | None, value_text: str) -> None:
        value = res.get(key) if key else None
        if key is None or key not in TARGETS:
            verdict = "-"
        elif quick:
            verdict = "n/a (quick)"
        elif value is None:
            verdict = "not measured"
        else:
            verdict = "pass" if judge(key, value) else "FAIL"
        rows.append((label, value_text, _target_text(key) if key else "-", verdict))

    bs = res["settings"]["batch_size"]
    add(f"training step, JoLA / floor (fwd+bwd+AdamW, batch {bs})", "train_step_ratio",
        f"{res['train_step_ratio']:.3f}x ({_ms(t['train_step_jola'])} vs {_ms(t['train_step_floor'])})")
    add("training step, JoLA without trainer bookkeeping / floor", "train_step_bare_ratio",
        f"{res['train_step_bare_ratio']:.3f}x ({_ms(t['train_step_jola_bare'])})")
    add(f"forward (logits, batch {bs}), hooked / base", "hooked_forward_ratio",
        f"{res['hooked_forward_ratio']:.3f}x ({_ms(t['forward_hooked'])} vs {_ms(t['forward_base'])})")
    add(f"forward (logits, batch {bs}), merged / base", "merged_forward_ratio",
        f"{res['merged_forward_ratio']:.3f}x ({_ms(t['forward_merged'])})")
    nt = res["settings"]["new_tokens"]
    add(f"greedy generation ({nt} tokens x {bs} prompts, KV cache), hooked / base", "hooked_generate_ratio",
        f"{res['hooked_generate_ratio']:.3f}x ({_ms(t['generate_hooked'])} vs {_ms(t['generate_base'])})")
    add("greedy generation, merged / base", "merged_generate_ratio",
        f"{res['merged_generate_ratio']:.3f}x ({_ms(t['generate_merged'])})")
    eb = res["eval_sizes"]["batch_size"]
    le = res["label_likelihood_examples_per_s"]
    add(f"label-likelihood eval, batch {eb} vs one at a time", "batched_eval_speedup",
        f"{res['batched_eval_speedup']:.2f}x ({le['batched']:.1f} vs {le['single']:.1f} examples/s)")
    gb = res.get("batched_eval_gemm_bound")
    if gb:
        add(f"label-likelihood eval, profiled CPU time: matrix products one at a time vs batch {eb}, and the "
            "ceiling they put on batching (all CPU time one at a time / batched matrix products)", None,
            f"GEMM {gb['gemm_s_single']:.1f} s ({100 * gb['gemm_share_single']:.0f}% of "
            f"{gb['total_cpu_s_single']:.1f} s) vs {gb['gemm_s_batched']:.1f} s "
            f"(of {gb['total_cpu_s_batched']:.1f} s); CPU time {gb['cpu_speedup']:.2f}x faster batched, "
            f"at most {gb['ceiling']:.2f}x")
    ge = res["generation_examples_per_s"]
    add(f"generation eval ({nt} tokens, stop at newline), batch {eb} vs one at a time", "generation_batched_speedup",
        f"{res['generation_batched_speedup']:.2f}x ({ge['batched']:.2f} vs {ge['single']:.2f} examples/s)")
    rt, re_ = res["rss"]["train"], res["rss"]["eval"]
    add(f"peak RSS, training ({rt.get('steps')} steps + validation, model load included)", "train_peak_rss_mb",
        f"{res['train_peak_rss_mb']:,.0f} MB (after load {rt['peak_rss_after_load_mb']:,.0f} MB)")
    add(f"peak RSS, evaluation ({re_.get('examples')} examples, batch {re_.get('batch_size')})", "eval_peak_rss_mb",
        f"{res['eval_peak_rss_mb']:,.0f} MB (after load {re_['peak_rss_after_load_mb']:,.0f} MB)")
    sh = res["rss"].get("step_hooked")
    if sh:
        n, shape = sh.get("steps"), "x".join(str(x) for x in sh.get("batch_shape", []))
        add(f"peak RSS, {n} JoLA training steps on one batch ({shape} tokens), hooked backend, vs the original "
            "code's on the same batch (issue 25's figure)", "step_peak_rss_mb",
            f"{res['step_peak_rss_mb']:,.0f} MB vs {res['step_peak_rss_original_code_mb']:,.0f} MB "
            f"({res['step_peak_rss_mb'] / res['step_peak_rss_original_code_mb']:.2f}x)")
        add("the same, hf backend / plain Hugging Face floor (frozen model, one dummy scalar, same loss)", None,
            f"{res['step_peak_rss_hf_backend_mb']:,.0f} MB / {res['step_peak_rss_hf_floor_mb']:,.0f} MB "
            f"({res['step_peak_rss_hf_backend_mb'] / res['step_peak_rss_hf_floor_mb']:.2f}x)")
    add("trainable parameters (share of the model)", "trainable_params",
        f"{res['trainable_params']:,} ({100 * res['trainable_share']:.4f}% of {res['model_params']:,})")
    add("attention heads (layers x heads)", "n_heads_total",
        f"{res['n_heads_total']} ({res['n_layers']} x {res['heads_per_layer']})")
    og = res.get("open_gates")
    add("open gates after the demo's training", None,
        f"additive {og['additive']}, multiplicative {og['multiplicative']} of {res['n_heads_total']} each"
        if og else "no demo results")
    ds = res.get("demo_seconds")
    add("demo wall time (`make demo`)", "demo_seconds", f"{ds:.0f} s" if ds is not None else "null (run `make demo`)")
    return rows


def render_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"# jola_lens benchmarks ({'QUICK: tiny random model, targets not judged' if res['quick'] else res['model']})",
        "",
        f"{res['date']}; {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), "
        f"torch {m['torch_version']}, {m['torch_threads']} threads (OMP_NUM_THREADS={m['OMP_NUM_THREADS']}); "
        f"benchmark took {res['benchmark_seconds']:.0f} s.",
        f"Load average at start {res['load_average']['start']}, at end {res['load_average']['end']}.",
    ]
    busy = res.get("busy_processes_at_start")
    if busy:
        lines.append("Other busy processes at the start (timings are less reliable): "
                     + "; ".join(f"{b['command'] or b['name']} ({b['cpu_percent']:.0f}% CPU)" for b in busy) + ".")
    lines += ["", "| measurement | value | target | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(res)]
    lines += ["", "Medians over interleaved repeats; raw timings in latest.json."]
    lines += [f"Note: {n}" for n in res.get("notes", [])]  # corrections made to this file after its run
    if res.get("demo_seconds") is None and not res["quick"]:
        lines.append(demo_note())
    return "\n".join(lines) + "\n"


# =============================================================================================
# Main
# =============================================================================================
def run_benchmarks(quick: bool, out_dir: str | Path, demo_results: str | None = None,
                   threads: int | None = None) -> dict[str, Any]:
    from jola_lens.model import JoLAModel

    t_start = time.perf_counter()
    st = settings_for(quick)
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    busy = busy_processes()
    _log(f"{'quick (tiny random model)' if quick else 'bundled SmolLM2-135M-Instruct'}; torch {torch.__version__}, "
         f"{torch.get_num_threads()} threads; load average {load_start}")
    if busy:
        _log("other busy processes: " + "; ".join(f"{b['command'] or b['name']} {b['cpu_percent']:.0f}%" for b in busy))
    model = build_model(quick)
    inp = load_inputs(model, quick)
    torch.manual_seed(0)
    jm = JoLAModel(model)
    res: dict[str, Any] = {
        "quick": quick,
        "model": getattr(model.cfg, "model_name", None),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": dataclasses.asdict(st),
        "machine": {**machine_info(), "threads_requested": threads},
        "targets": {k: f"{op} {thr}" for k, (op, thr) in TARGETS.items()},
        "busy_processes_at_start": busy,
        "task": {"style": inp.spec.style, "target": inp.spec.target, "n_train": len(inp.train_tok),
                 "n_test": len(inp.prompts)},
        "timings": {},
    }
    res.update(parameter_counts(model, jm))

    _log("1/4 training step: floor vs JoLA (interleaved)")
    r = bench_train(model, jm, inp, st)
    res["timings"].update(r.pop("timings"))
    res.update(r)
    _log(f"training step ratio JoLA/floor {res['train_step_ratio']:.3f} (bare {res['train_step_bare_ratio']:.3f})")

    _log("2/4 inference: base vs hooked vs merged")
    jm.eval()
    merged = jm.merge()
    r = bench_inference(model, jm, merged, inp, st)
    res["timings"].update(r.pop("timings"))
    res.update(r)
    del merged

    _log("3/4 evaluation throughput: batched vs one at a time")
    r = bench_eval(jm, inp, st)
    res["timings"].update(r.pop("timings"))
    res.update(r)
    del model, jm, inp

    _log("4/4 peak RSS (subprocesses)")
    rss = {"train": run_child("train", quick, threads), "eval": run_child("eval", quick, threads)}
    for kind in STEP_CHILDREN:  # one batch, a few steps: the workload of the original code's figure
        rss[kind] = run_child(kind, quick, threads)
    res["rss"] = rss
    res["train_peak_rss_mb"] = rss["train"]["peak_rss_mb"]
    res["eval_peak_rss_mb"] = rss["eval"]["peak_rss_mb"]
    res["step_peak_rss_mb"] = rss["step_hooked"]["peak_rss_mb"]
    res["step_peak_rss_hf_backend_mb"] = rss["step_hf"]["peak_rss_mb"]
    res["step_peak_rss_hf_floor_mb"] = rss["step_floor_hf"]["peak_rss_mb"]
    res["step_peak_rss_original_code_mb"] = ORIGINAL_CODE_STEP_PEAK_MB

    res.update(read_demo_results(resolve_demo_path(demo_results, quick)))
    res["passes"] = {k: (None if quick else judge(k, res.get(k))) for k in TARGETS}
    res["load_average"] = {"start": load_start, "end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    res["benchmark_process_peak_rss_mb"] = peak_rss_mb()
    res["benchmark_seconds"] = time.perf_counter() - t_start

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(res, indent=2, default=str))
    md = render_markdown(res)
    (out / "latest.md").write_text(md)
    print()
    print(md)
    print(f"[bench] wrote {out / 'latest.json'} and {out / 'latest.md'}")
    return res


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny random model, 2-3 repeats, no demo (seconds)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help=f"output folder for latest.json and latest.md (default {DEFAULT_OUT})")
    ap.add_argument("--demo-results", default=None,
                    help="a demo results.json to read demo_seconds and the open gates from "
                         f"(default {DEFAULT_DEMO_RESULTS} if present)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads(N) here and in the RSS subprocesses (default: torch's own choice)")
    ap.add_argument("--child", choices=("train", "eval") + STEP_CHILDREN, default=None, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    from jola_lens.loading import set_offline_env

    set_offline_env()
    args = build_parser().parse_args(argv)
    if args.threads is None and args.quick:
        # The quick run's timings mean nothing (a tiny random model); one thread keeps it fast and
        # immune to OpenMP threads spinning against other jobs on a busy machine.
        args.threads = 1
    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.child:
        fn = step_child_main if args.child in STEP_CHILDREN else child_main
        print(json.dumps(fn(args.child, args.quick)), flush=True)
        return 0
    run_benchmarks(args.quick, args.out, args.demo_results, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
