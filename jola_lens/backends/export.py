"""Export an edited model as a standard Hugging Face checkpoint (PEFT's ``merge_and_unload().save_pretrained``).

:func:`save_merged_hf` folds a mergeable editor (JoLA, LoFiT) into the weights of an hf-backend
model and writes ``config.json``, ``model.safetensors`` (HF names), the tokenizer and the generation
config: ``AutoModelForCausalLM.from_pretrained(DIR)`` (or vLLM, or lm-evaluation-harness's ``hf``
model) loads it with no jola_lens installed.

The additive edit becomes a bias of the attention output projection. Where the family's projection
has no bias:

* the config has an ``attention_bias`` switch (Llama, Gemma, Gemma-2, OLMo-2, GPT-NeoX): it is turned
  on and the other attention projections get zero biases (the same function);
* Mistral, Qwen2 and Phi-3 have no such switch: the model is written as ``LlamaForCausalLM`` with
  ``attention_bias=True`` (the same computation: Llama's attention and MLP, with Qwen2's q/k/v
  biases kept and zero ones otherwise; Phi-3's fused ``qkv_proj`` and ``gate_up_proj`` split into
  Llama's projections), which a model with a sliding window equals only for sequences up to that
  window;
* otherwise (a Phi-3 with partial rotary, a family with neither) an additive edit cannot be exported
  exactly, and :class:`ExportError` says so.

What was done is written into the exported ``config.json`` under ``"jola_lens"`` and returned.

Example (a tiny random Llama, JoLA with random edits):
    >>> import tempfile, torch
    >>> from jola_lens import JoLAModel, load_model
    >>> from jola_lens.testing import save_tiny_checkpoint
    >>> d = tempfile.mkdtemp()
    >>> model = load_model(save_tiny_checkpoint(d + "/tiny"), backend="hf")
    >>> jm = JoLAModel(model)
    >>> with torch.no_grad():
    ...     _ = [p.uniform_(0.5, 1.5) for p in jm.edit_parameters()]
    >>> info = save_merged_hf(jm, d + "/out")
    >>> info["architecture"], info["added_biases"]
    ('LlamaForCausalLM', True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["ExportError", "save_merged_hf", "verify_export"]

#: families without an ``attention_bias`` switch, written as Llama with ``attention_bias=True``
AS_LLAMA = ("mistral", "qwen2", "phi3")


class ExportError(ValueError):
    """The edit cannot be written as an exact HF checkpoint of this family; the message says why."""


def _attention(layer: nn.Module) -> nn.Module:
    for name in ("self_attn", "attn", "attention"):
        if hasattr(layer, name):
            return getattr(layer, name)
    raise ExportError(f"no attention module found in {type(layer).__name__}")


@torch.no_grad()
def _zero_biases(layer: nn.Module) -> None:
    """Give every bias-free linear projection of the layer's attention a zero bias."""
    from .hf import ensure_bias

    for mod in _attention(layer).modules():
        if isinstance(mod, nn.Linear):
            ensure_bias(mod, mod.out_features)


def save_merged_hf(editor: Any, out_dir: str | Path, *, merged_from: str | None = None,
                   verify: bool = True) -> dict[str, Any]:
    """Fold ``editor``'s edit into a copy of its hf-backend model and write an HF checkpoint to ``out_dir``.

    Returns what was written (``architecture``, ``added_biases``, ``note``, and with ``verify`` the
    largest logit difference of the reloaded checkpoint against the hooked-in edit, ``max_abs_diff``).

    An editor on the hooked backend is moved first: its model is loaded again on the hf backend from
    where :func:`~jola_lens.load_model` found it, and the edit loaded onto it (the same logits).

    Raises:
        ExportError: the edit does not fold, its family cannot hold it, or the model's source is unknown.
    """
    from . import backend_of

    if backend_of(editor) != "hf":
        editor = _on_hf_backend(editor)
    if not editor.supports_merge:
        raise ExportError(f"{editor.display_name} edits depend on token positions and do not fold into the weights")
    model = editor.model
    family = model.cfg.model_type
    had_bias = [getattr(model.o_proj(i), "bias", None) is not None for i in range(model.cfg.n_layers)]
    merged = editor.merge()
    added = any(getattr(merged.o_proj(i), "bias", None) is not None and not had_bias[i]
                for i in range(model.cfg.n_layers))
    hf = merged.hf
    config = hf.config
    arch = type(hf).__name__
    note = "the edit is folded into the output projections"
    if added:
        if family in AS_LLAMA:
            hf, note = _as_llama(hf), (f"{arch} written as LlamaForCausalLM with attention_bias=True (the same "
                                        "computation; zero q/k/v biases where the original had none"
                                        + ("; the fused qkv and gate_up projections split" if family == "phi3"
                                           else "") + ") to hold the additive edit in the output-projection bias")
            window = getattr(config, "sliding_window", None)
            if window and getattr(config, "use_sliding_window", True) and window < model.cfg.n_ctx:
                note += f"; equal to the original for sequences up to its sliding window ({window} tokens)"
            arch = "LlamaForCausalLM"
        elif hasattr(config, "attention_bias"):
            for layer in merged.layers:
                _zero_biases(layer)
            config.attention_bias = True
            note = ("attention_bias=True: the additive edit is the output-projection bias; the other attention "
                    "projections got zero biases")
        else:
            raise ExportError(f"{arch} has no output-projection bias and no exact architecture to hold one: only "
                              "edits without an additive part export (train with --edit multiplicative)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"architecture": arch, "added_biases": added, "note": note, "editor": editor.name,
                            "merged_from": merged_from, "base_model": model.cfg.model_name}
    hf.config.jola_lens = dict(info)
    hf.save_pretrained(out, safe_serialization=True)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out)
    gc = getattr(hf, "generation_config", None)
    if gc is not None:
        gc.save_pretrained(out)
    if verify:
        info["max_abs_diff"] = verify_export(editor, out)
        cfg_file = out / "config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["jola_lens"]["max_abs_diff"] = info["max_abs_diff"]
        cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")
    return info


def _on_hf_backend(editor: Any) -> Any:
    """The same edit on the hf backend: the model loaded again from where ``load_model`` found it."""
    import tempfile

    from ..editors import load_editor
    from ..loading import load_model

    source = getattr(editor.model, "jola_lens_source", None)
    if not source:
        raise ExportError("this editor's model was not loaded by jola_lens.load_model, so its HF checkpoint is "
                          "unknown: load it with load_model(..., backend='hf') and the edit onto it with load_editor")
    model = load_model(source["name_or_path"], backend="hf", dtype=editor.model.cfg.dtype, verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        editor.save(tmp)
        return load_editor(tmp, model)


def _as_llama(hf: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    if hf.config.model_type == "phi3" and float(getattr(hf.config, "partial_rotary_factor", 1.0) or 1.0) != 1.0:
        raise ExportError("this Phi-3 rotates part of each head (partial_rotary_factor != 1), which Llama does not: "
                          "only edits without an additive part export (train with --edit multiplicative)")
    d = hf.config.to_dict()
    for k in ("model_type", "architectures", "auto_map", "transformers_version"):
        d.pop(k, None)
    d.update(attention_bias=True, mlp_bias=False, architectures=["LlamaForCausalLM"])
    head_dim = getattr(hf.config, "head_dim", None) or hf.config.hidden_size // hf.config.num_attention_heads
    d["head_dim"] = head_dim
    cfg = LlamaConfig(**d)
    for layer in hf.model.layers:
        _zero_biases(layer)
    with torch.device("meta"):
        llama = LlamaForCausalLM(cfg)
    state = _split_fused(hf) if hf.config.model_type == "phi3" else hf.state_dict()
    missing, unexpected = llama.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if k != "lm_head.weight" or not cfg.tie_word_embeddings]
    if missing or unexpected:
        raise ExportError(f"could not write {type(hf).__name__} as Llama: missing {missing[:4]}, "
                          f"unexpected {unexpected[:4]}")
    if cfg.tie_word_embeddings:
        llama.tie_weights()
    llama.generation_config = hf.generation_config
    return llama.eval()


def _split_fused(hf: Any) -> dict[str, torch.Tensor]:
    """Phi-3's state dict under Llama's names: ``qkv_proj`` -> q/k/v (rows in that order), ``gate_up_proj``
    -> gate/up (the first half gates, as Phi-3's MLP reads it)."""
    c = hf.config
    n_heads = c.num_attention_heads
    n_kv = getattr(c, "num_key_value_heads", None) or n_heads
    d_head = getattr(c, "head_dim", None) or c.hidden_size // n_heads
    out: dict[str, torch.Tensor] = {}
    for k, v in hf.state_dict().items():
        if k.endswith("self_attn.qkv_proj.weight") or k.endswith("self_attn.qkv_proj.bias"):
            base, kind = k.rsplit(".qkv_proj.", 1)
            q, kk, vv = v.split([n_heads * d_head, n_kv * d_head, n_kv * d_head], dim=0)
            out.update({f"{base}.q_proj.{kind}": q, f"{base}.k_proj.{kind}": kk, f"{base}.v_proj.{kind}": vv})
        elif k.endswith("mlp.gate_up_proj.weight"):
            base = k.rsplit(".gate_up_proj.", 1)[0]
            gate, up = v.chunk(2, dim=0)
            out.update({f"{base}.gate_proj.weight": gate, f"{base}.up_proj.weight": up})
        else:
            out[k] = v
    return out  # _as_llama gave qkv_proj its zero bias first, so q/k/v each have one


@torch.no_grad()
def verify_export(editor: Any, out_dir: str | Path, tokens: torch.Tensor | None = None) -> float:
    """Reload ``out_dir`` with ``AutoModelForCausalLM.from_pretrained`` and return the largest logit
    difference to ``editor``'s hooked-in edit on a few tokens; raises if any weight was missing."""
    from transformers import AutoModelForCausalLM

    model = editor.model
    reloaded, info = AutoModelForCausalLM.from_pretrained(out_dir, dtype=model.cfg.dtype, output_loading_info=True)
    if info.get("missing_keys"):
        raise ExportError(f"{out_dir}: the reloaded checkpoint lacks {sorted(info['missing_keys'])[:4]}")
    if tokens is None:
        g = torch.Generator().manual_seed(0)
        tokens = torch.randint(0, model.cfg.d_vocab, (2, 12), generator=g)
    tokens = tokens.to(model.cfg.device)
    reloaded.to(model.cfg.device).eval()
    from ..eval.target import applied_model

    with applied_model(editor) as edited:  # eval mode, edits attached, training mode restored after
        want = edited(tokens)
    got = reloaded(tokens).logits  # the HF forward applies Gemma-2's logit soft cap, as model(tokens) does
    return float((got.float() - want.float()).abs().max())
