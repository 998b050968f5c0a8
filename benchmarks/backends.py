"""Backends side by side (issue 23): parity per family, and the bundled model's speed on each backend.

1. **Family table** (tiny random checkpoints of every family, saved locally): for each family and
   backend (hooked where TransformerLens 3.9 converts the family, bridge, hf), the largest
   difference of ``hook_z`` to the HF model's output-projection input, of the edited logits to the
   reference backend's (the same random JoLA edit; the reference is hooked where it exists, else
   hf), and of the exported checkpoint reloaded by ``transformers`` to the hooked-in edit.
2. **Bundled model** (``--full``; the quick run uses the tiny Llama): per backend, the training step
   against the backend's own frozen floor (:func:`benchmarks.run.bench_train`), option scoring of
   the demo's questions (examples/s, the same picks) and greedy generation against ``transformers``'
   ``generate`` with its KV cache (the same tokens).

Run: ``python -m benchmarks.backends [--full]``; writes ``benchmarks/results/backends.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
TOKENS = torch.tensor([[3, 5, 7, 9, 11, 2, 4], [4, 6, 8, 10, 1, 0, 0]])
MASK = torch.tensor([[1] * 7, [1] * 5 + [0, 0]])


def _log(msg: str) -> None:
    print(f"[backends] {msg}", file=sys.stderr, flush=True)


def _random_edit(jm: Any) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for e in jm.edits.values():
            for name, p in e.named_parameters():
                p.copy_(2.0 + torch.randn(p.shape, generator=g) if "log_alpha" in name
                        else torch.randn(p.shape, generator=g) * 0.5)


@torch.no_grad()
def family_table(tmp: Path) -> list[dict[str, Any]]:
    from transformers import AutoModelForCausalLM

    from jola_lens import JoLAModel, load_model
    from jola_lens.backends.export import ExportError, save_merged_hf
    from jola_lens.loading import hooked_available
    from jola_lens.testing import TINY_FAMILIES, save_tiny_checkpoint

    real = MASK.bool()
    rows = []
    for fam in TINY_FAMILIES:
        ckpt = save_tiny_checkpoint(tmp / fam, family=fam)
        ref = AutoModelForCausalLM.from_pretrained(ckpt).eval()
        models = {"hf": load_model(ckpt, backend="hf"), "bridge": load_model(ckpt, backend="bridge")}
        hooked_error = None
        if hooked_available():
            try:
                models["hooked"] = load_model(ckpt, backend="hooked")
            except Exception as e:  # the families TransformerLens 3.9 does not convert
                hooked_error = f"not converted by TransformerLens 3.9 ({type(e).__name__})"
        else:
            hooked_error = "TransformerLens 4.x has no HookedTransformer"
        edited = {}
        for backend, model in models.items():
            seen: dict[str, torch.Tensor] = {}
            proj = ref.get_submodule(models["hf"].family.decoder).get_submodule(models["hf"].family.layers)[1]
            proj = proj.get_submodule(models["hf"].family.o_proj)
            h = proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
            ref(TOKENS, attention_mask=MASK)
            h.remove()
            _, cache = model.run_with_cache(TOKENS, attention_mask=MASK, names_filter="blocks.1.attn.hook_z")
            z = cache["blocks.1.attn.hook_z"]
            hook_diff = float((z.reshape(*z.shape[:2], -1) - seen["x"])[real].abs().max())
            jm = JoLAModel(model).eval()
            _random_edit(jm)
            with jm.applied():
                edited[backend] = model(TOKENS, attention_mask=MASK)
            row = {"family": fam, "backend": backend, "hook_input_max_abs_diff": hook_diff}
            if backend != "hooked":
                try:
                    info = save_merged_hf(jm, tmp / f"{fam}_{backend}_export")
                    row["export"] = info["architecture"]
                    row["export_max_abs_diff"] = info["max_abs_diff"]
                except ExportError as e:
                    row["export"] = f"refused: {str(e).split(':')[0]}"
            rows.append(row)
        reference = "hooked" if "hooked" in edited else "hf"
        for row in rows:
            if row["family"] == fam:
                row["reference"] = reference
                row["logits_vs_reference_max_abs_diff"] = float(
                    (edited[row["backend"]] - edited[reference])[real].abs().max())
                if hooked_error and row["backend"] == "hf":
                    row["hooked"] = hooked_error
        _log(f"{fam}: done")
    return rows


def bundled(full: bool, n_questions: int, rounds: int) -> dict[str, Any]:
    from benchmarks.run import Settings, bench_train, load_inputs
    from benchmarks.side_by_side import bench_generation
    from jola_lens import JoLAModel, load_model
    from jola_lens.eval.scoring import choice_likelihood_predict
    from jola_lens.tasks import choices_of, option_continuation

    out: dict[str, Any] = {}
    name = "smollm2" if full else None
    if not full:
        from jola_lens.testing import save_tiny_checkpoint

        name = str(save_tiny_checkpoint(Path(tempfile.mkdtemp()) / "tiny"))
    st = Settings.full() if full else Settings.quick_()
    picks = {}
    from jola_lens.loading import hooked_available

    backends = ("hooked", "bridge", "hf") if hooked_available() else ("bridge", "hf")
    for backend in backends:
        t0 = time.time()
        model = load_model(name, backend=backend, verbose=False)
        load_s = time.time() - t0
        inp = load_inputs(model, quick=False)
        torch.manual_seed(0)
        jm = JoLAModel(model)
        _log(f"{backend}: training steps")
        train = bench_train(model, jm, inp, st)
        jm.eval()
        test = inp.td.test[:n_questions]
        conts = [[option_continuation(c, inp.spec.style) for c in choices_of(e)] for e in test]
        times = []
        for _ in range(rounds):
            t0 = time.time()
            p = choice_likelihood_predict(model, inp.prompts[:n_questions], conts, batch_size=16)
            times.append(time.time() - t0)
        picks[backend] = (p.acc, p.acc_norm)
        _log(f"{backend}: generation")
        hf_model = _hf_twin(name)  # a plain HF model (the hf backend's own carries its hook wiring)
        gen = bench_generation(model, hf_model, inp.prompts[:16], rounds, 16)
        out[backend] = {
            "load_s": round(load_s, 2),
            "train_step_median_s": train["timings"]["train_step_jola"]["median_s"],
            "train_step_vs_own_floor": round(train["train_step_ratio"], 3),
            "train_step_timings": train["timings"],
            "scoring_examples_per_s": round(n_questions / statistics.median(times), 2),
            "scoring_seconds": [round(t, 2) for t in times],
            "generation_tokens_per_s": gen["jola_lens"]["tokens_per_s"],
            "hf_generate_tokens_per_s": gen["hf_generate"]["tokens_per_s"],
            "generation_vs_hf_generate": gen["speed_ratio"],
            "generation_identical_to_hf": gen["identical_tokens"],
        }
    out["same_picks"] = all(p == picks["hf"] for p in picks.values())
    out["backends"] = list(backends)
    out["n_questions"] = n_questions
    return out


def _hf_twin(name: str) -> Any:
    from transformers import AutoModelForCausalLM

    from jola_lens.loading import BUNDLED_NAMES, bundled_checkpoint_dir

    path = bundled_checkpoint_dir(False) if name.lower() in BUNDLED_NAMES else name
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def render(res: dict[str, Any]) -> str:
    lines = ["# Backends side by side", "", f"{res['when']}, {res['mode']} run, {torch.get_num_threads()} threads.", "",
             "## Parity per family (tiny random checkpoints; max abs differences, fp32)", "",
             "| family | backend | hook_z vs HF o_proj input | edited logits vs reference | export reloaded vs edit |",
             "|---|---|---|---|---|"]
    for r in res["families"]:
        vs = r["logits_vs_reference_max_abs_diff"]
        exp = r.get("export_max_abs_diff")
        ref = "reference" if r["backend"] == r["reference"] else f"{vs:.1e} (vs {r['reference']})"
        if r.get("hooked"):
            ref += f"; hooked: {r['hooked']}"
        lines.append(f"| {r['family']} | {r['backend']} | {r['hook_input_max_abs_diff']:.1e} | {ref} | "
                     f"{(r['export'] + f' {exp:.1e}') if exp is not None else r.get('export', '-')} |")
    b = res.get("bundled")
    if b:
        lines += ["", f"## {'SmolLM2-135M-Instruct' if res['mode'] == 'full' else 'tiny Llama'}: each backend", "",
                  "| backend | train step vs own floor | scoring examples/s | generation tokens/s | "
                  "HF generate tokens/s | generation vs HF | same tokens as HF |", "|---|---|---|---|---|---|---|"]
        for k in b["backends"]:
            r = b[k]
            lines.append(f"| {k} | {r['train_step_vs_own_floor']}x | {r['scoring_examples_per_s']} | "
                         f"{r['generation_tokens_per_s']} | {r['hf_generate_tokens_per_s']} | "
                         f"{r['generation_vs_hf_generate']}x | {r['generation_identical_to_hf']} |")
        lines += ["", f"Same option picks on every backend ({b['n_questions']} questions): {b['same_picks']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the bundled model (minutes); default: tiny models only")
    ap.add_argument("--questions", type=int, default=48, help="questions scored per backend (--full)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds of scoring and generation")
    ap.add_argument("--out", default=str(RESULTS), help="folder for backends.json / backends.md")
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), "mode": "full" if args.full else "quick"}
    with tempfile.TemporaryDirectory() as tmp:
        res["families"] = family_table(Path(tmp))
    res["bundled"] = bundled(args.full, args.questions if args.full else 8, args.rounds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "backends" if args.full else "backends_quick"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    (out / f"{stem}.md").write_text(render(res))
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
