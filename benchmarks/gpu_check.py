"""GPU check (issue 26): JoLA on random-initialised models of real shapes, bf16, one table, under 5 minutes.

    python -m benchmarks.gpu_check                           # every visible GPU's first device, both shapes
    torchrun --nproc_per_node 8 -m benchmarks.gpu_check      # the same, plus data parallel across 8 GPUs
    python -m benchmarks.gpu_check --dry-run                 # CPU, a tiny config: proves the code runs (seconds)

Nothing is downloaded: the models are ``LlamaForCausalLM.from_config`` with the Llama-3.2-1B and
Llama-3.1-8B shapes (random weights: speed and memory do not depend on the values), on the hf backend
(:class:`jola_lens.backends.hf.HFHookedModel`), batch 8 x 256 tokens of which the last 16 are the answer.
Per shape: the JoLA training step (``Trainer._train_step``: hooks, answer-only loss, gate penalty,
backward, AdamW) against the frozen floor (the same loss with one dummy scalar on layer 0's ``hook_z``),
each with and without gradient checkpointing; peak GPU memory (``torch.cuda.max_memory_allocated``);
tokens per second. Under torchrun instead, every rank runs the JoLA step on its own batch with the editor
in DDP (``jola_lens.distributed``), first with the whole base on every GPU, then with the base sharded by
FSDP2 (built on the meta device, each rank allocating only its shards; gradient checkpointing on), and rank 0
prints the DDP and FSDP tables (step time, tokens/s over all GPUs, share of the weights each rank holds).
Writes ``benchmarks/results/gpu_check.{json,md}`` (``--out``).
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

#: (hidden, layers, heads, kv heads, intermediate, vocab) of the published configs
SHAPES: dict[str, dict[str, int]] = {
    "Llama-3.2-1B": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=8192, vocab_size=128256),
    "Llama-3.1-8B": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=14336, vocab_size=128256),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=512),
}


def _log(msg: str) -> None:
    print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


def build(shape: str, device: str, dtype: torch.dtype) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    from jola_lens.backends.hf import HFHookedModel

    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        hf = LlamaForCausalLM(cfg).to(dtype)
    return HFHookedModel(hf.eval(), model_name=f"random {shape}")


def examples(vocab: int, n: int, seq: int, answer: int) -> list[dict[str, list[int]]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (seq,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (seq - answer) + ids[seq - answer:]})
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str, repeats: int) -> dict[str, float]:
    fn()  # warm-up
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    return {"median_s": statistics.median(times), "peak_gib": peak}


def bench_shape(shape: str, device: str, dtype: torch.dtype, batch: int, seq: int, repeats: int) -> dict[str, Any]:
    from jola_lens.model import JoLAModel
    from jola_lens.recipes import DEMO_DEFAULTS
    from jola_lens.train import TrainConfig, Trainer, answer_loss, collate

    model = build(shape, device, dtype)
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    data = examples(model.cfg.d_vocab, batch, seq, 16)
    b = {k: v.to(device) for k, v in collate(data, 0).items()}
    jm = JoLAModel(model)
    jm.to(device)
    trainer = Trainer(jm, data, None, TrainConfig(**{**DEMO_DEFAULTS, "batch_size": batch}, seed=0), progress=False,
                      pad_id=0)
    jm.train()
    dummy = torch.nn.Parameter(torch.ones((), device=device))
    opt = torch.optim.AdamW([dummy], lr=1e-3)

    def floor() -> None:
        opt.zero_grad(set_to_none=True)
        with model.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: z * dummy.to(z.dtype))]):
            loss = answer_loss(model, b["input_ids"], b["labels"], b["attention_mask"])
            loss.backward()  # with the hook on: checkpointing recomputes layer 0 in here
        opt.step()

    def jola() -> None:
        trainer._train_step(b)

    row: dict[str, Any] = {"shape": shape, "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3),
                           "weights_gib": round(weights_gib, 2), "edit_params": jm.n_trainable_parameters(),
                           "batch": batch, "seq": seq}
    for ckpt in (False, True):
        if ckpt:
            model.gradient_checkpointing_enable()
        tag = "ckpt" if ckpt else "plain"
        for name, fn in (("floor", floor), ("jola", jola)):
            try:
                r = timed(fn, device, repeats)
            except torch.OutOfMemoryError:
                r = {"median_s": None, "peak_gib": None, "oom": True}
                torch.cuda.empty_cache()
            row[f"{name}_{tag}"] = r
        f, j = row[f"floor_{tag}"]["median_s"], row[f"jola_{tag}"]["median_s"]
        row[f"ratio_{tag}"] = round(j / f, 3) if f and j else None
        row[f"tokens_per_s_{tag}"] = round(batch * seq / j, 1) if j else None
    if ckpt:
        model.gradient_checkpointing_disable()
    return row


def _group_step(model: Any, shape: str, device: str, batch: int, seq: int, repeats: int) -> dict[str, Any]:
    """Every rank the JoLA step on its own batch of ``batch`` (global ``batch * world``), the editor in DDP:
    the step time averaged over the ranks, tokens/s over all of them."""
    from jola_lens.distributed import all_reduce_sum, current
    from jola_lens.model import JoLAModel
    from jola_lens.recipes import DEMO_DEFAULTS
    from jola_lens.train import TrainConfig, Trainer

    dist = current()
    data = examples(model.cfg.d_vocab, batch * dist.world, seq, 16)
    jm = JoLAModel(model)
    jm.to(device)
    trainer = Trainer(jm, data, None, TrainConfig(**{**DEMO_DEFAULTS, "batch_size": batch * dist.world}, seed=0),
                      progress=False, pad_id=0)
    jm.train()
    idx = list(range(batch * dist.world))
    r = timed(lambda: trainer._train_step_on(idx), device, repeats)
    mean = all_reduce_sum([r["median_s"]], device=device)[0] / dist.world
    return {"shape": shape, "world": dist.world, "per_rank_batch": batch, "mean_step_s": round(mean, 4),
            "tokens_per_s": round(batch * seq * dist.world / mean, 1), "peak_gib_rank0": r["peak_gib"]}


def bench_ddp(shape: str, device: str, dtype: torch.dtype, batch: int, seq: int, repeats: int) -> dict[str, Any] | None:
    """Under torchrun: every rank runs the JoLA step on its own batch, the editor in DDP."""
    from jola_lens.distributed import current

    if not current().enabled:
        return None
    return _group_step(build(shape, device, dtype), shape, device, batch, seq, repeats)


def build_sharded(shape: str, device: str, dtype: torch.dtype) -> Any:
    """The random model built on the meta device, sharded (FSDP2, :func:`jola_lens.distributed.shard_base`) and
    only then given memory: each rank allocates its shards, never the whole model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from jola_lens.backends.hf import HFHookedModel
    from jola_lens.distributed import shard_base

    cfg = LlamaConfig(**SHAPES[shape], max_position_embeddings=4096, rope_theta=500000.0, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        hf = LlamaForCausalLM(cfg).to(dtype)
    model = HFHookedModel(hf.eval(), model_name=f"random {shape}")
    model.weight_fingerprint_cache = []  # nothing to fingerprint on the meta device
    shard_base(model)
    model.to_empty(device=device)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # DTensor shards: each rank fills its own
            p.normal_(0.0, 0.02)
        for layer in hf.model.layers:  # RMSNorm weights at 1 as from_config sets them
            layer.input_layernorm.weight.fill_(1.0)
            layer.post_attention_layernorm.weight.fill_(1.0)
        hf.model.norm.weight.fill_(1.0)
    # the rotary frequencies are a buffer computed at construction: build them again on the device
    with torch.device(device):
        hf.model.rotary_emb = type(hf.model.rotary_emb)(config=cfg)
    model.cfg.device = torch.device(device)
    return model


def bench_fsdp(shape: str, device: str, dtype: torch.dtype, batch: int, seq: int,
               repeats: int) -> dict[str, Any] | None:
    """Under torchrun: the base sharded over the ranks (FSDP2), every rank the JoLA step on its own batch with
    gradient checkpointing, the editor whole in fp32 under DDP."""
    from jola_lens.distributed import current, local_share

    if not current().enabled:
        return None
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_sharded(shape, device, dtype)
    model.gradient_checkpointing_enable()
    here, whole = local_share(model)
    return {**_group_step(model, shape, device, batch, seq, repeats), "weights_held_share": round(here / whole, 4)}


def render(res: dict[str, Any]) -> str:
    lines = [f"# GPU check ({res['device_name']}, {res['dtype']}, {res['date']}; took {res['seconds']:.0f} s)", ""]
    if res["rows"]:
        lines += ["| shape | params (B) | weights (GiB) | edit params | checkpointing | JoLA step / floor "
                  "| JoLA step (s) | floor (s) | peak GPU memory JoLA / floor (GiB) | tokens/s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
    for row in res["rows"]:
        for tag, label in (("plain", "off"), ("ckpt", "on")):
            j, f = row[f"jola_{tag}"], row[f"floor_{tag}"]

            def fmt(x: Any, spec: str = ".3f") -> str:
                return "OOM" if x is None else format(x, spec)

            lines.append(f"| {row['shape']} | {row['params_b']} | {row['weights_gib']} | {row['edit_params']:,} | "
                         f"{label} | {fmt(row[f'ratio_{tag}'])}x | {fmt(j['median_s'])} | {fmt(f['median_s'])} | "
                         f"{fmt(j['peak_gib'], '.2f') if j['peak_gib'] is not None else '-'} / "
                         f"{fmt(f['peak_gib'], '.2f') if f['peak_gib'] is not None else '-'} | "
                         f"{fmt(row[f'tokens_per_s_{tag}'], '.0f')} |")
    ddp = [d for d in res.get("ddp", []) if d]
    if ddp:
        lines += ["", "| shape | GPUs (DDP) | batch per GPU | step (s, mean over ranks) | tokens/s (all GPUs) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {d['shape']} | {d['world']} | {d['per_rank_batch']} | {d['mean_step_s']} | {d['tokens_per_s']} |"
                  for d in ddp]
    fsdp = [d for d in res.get("fsdp", []) if d]
    if fsdp:
        lines += ["", "| shape | GPUs (FSDP, checkpointing) | batch per GPU | weights held per rank "
                  "| step (s, mean over ranks) | tokens/s (all GPUs) | peak memory rank 0 (GiB) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {d['shape']} | {d['world']} | {d['per_rank_batch']} | {d['weights_held_share']:.1%} | "
                  f"{d['mean_step_s']} | {d['tokens_per_s']} | "
                  f"{'-' if d['peak_gib_rank0'] is None else format(d['peak_gib_rank0'], '.2f')} |" for d in fsdp]
    else:
        lines += ["", "DDP: one process (run under `torchrun --nproc_per_node N` for the data-parallel row)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, the tiny config, 1 repeat (seconds)")
    ap.add_argument("--shapes", nargs="*", default=None, help=f"of {', '.join(SHAPES)} (default: the two Llamas)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    a = ap.parse_args(argv)
    from jola_lens.distributed import current, init_from_env

    started = time.time()
    init_from_env()
    dist = current()
    if a.dry_run:
        device, dtype, shapes, repeats = "cpu", torch.bfloat16, a.shapes or ["tiny"], 1
        a.batch, a.seq = min(a.batch, 4), min(a.seq, 32)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no GPU here: use --dry-run on a CPU (the tiny config)")
        device, dtype, repeats = f"cuda:{dist.local_rank}", torch.bfloat16, a.repeats
        shapes = a.shapes or list(SHAPES)[:2]
        torch.cuda.set_device(device)
    res: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "dtype": str(dtype).replace("torch.", ""),
                           "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU",
                           "world": dist.world, "rows": [], "ddp": [], "fsdp": []}
    for shape in shapes:
        # single-process rows without a launcher; under torchrun every rank runs the DDP step (a Trainer in a
        # process group is a DDP one, so one rank alone cannot time the single-device step there)
        if not dist.enabled:
            _log(f"{shape}: JoLA step vs floor, with and without gradient checkpointing")
            res["rows"].append(bench_shape(shape, device, dtype, a.batch, a.seq, repeats))
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        if dist.enabled:
            _log(f"{shape}: DDP over {dist.world} processes")
            res["ddp"].append(bench_ddp(shape, device, dtype, a.batch, a.seq, repeats))
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            _log(f"{shape}: FSDP over {dist.world} processes (gradient checkpointing)")
            res["fsdp"].append(bench_fsdp(shape, device, dtype, a.batch, a.seq, repeats))
    res["seconds"] = time.time() - started
    if dist.is_main:
        a.out.mkdir(parents=True, exist_ok=True)
        stem = ("gpu_check_dry_run" if a.dry_run else "gpu_check") + (f"_{dist.world}proc" if dist.enabled else "")
        (a.out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
        md = render(res)
        (a.out / f"{stem}.md").write_text(md)
        print(md)
    if dist.enabled:
        torch.distributed.barrier()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
