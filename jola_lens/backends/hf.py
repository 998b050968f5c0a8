"""The ``hf`` backend: a plain ``transformers`` causal LM with TransformerLens hook points, no conversion.

:class:`HFHookedModel` wraps an ``AutoModelForCausalLM`` and gives the editors what they use of a
HookedTransformer: ``cfg`` (shapes, name, device), ``hook_dict`` with real TransformerLens
:class:`~transformer_lens.hook_points.HookPoint` s, ``model(tokens, attention_mask=...,
stop_at_layer=..., past_kv_cache=...)``, ``ln_final`` / ``unembed``, ``tokenizer`` and a KV cache.
The weights stay the HF model's own (names, layout, dtype), so ``save_pretrained`` writes a
standard checkpoint.

Hook points (each is a forward hook on an HF module, or a forward pre-hook for ``hook_z``):

=============================  ===================================  ===============================
name                           HF site                              shape
=============================  ===================================  ===============================
``blocks.{l}.attn.hook_z``     input of the attention output        ``[batch, pos, n_heads, d_head]``
                               projection (``o_proj``, GPT-2's
                               ``c_proj``, NeoX's ``dense``)
``blocks.{l}.hook_mlp_out``    what the MLP adds to the residual    ``[batch, pos, d_model]``
``blocks.{l}.hook_resid_post`` the decoder layer's output           ``[batch, pos, d_model]``
=============================  ===================================  ===============================

That is the same tensor as TransformerLens's ``hook_z`` (query heads, before the output projection;
tested to 1e-6 on every family in ``tests/test_backends.py``); a hook's returned tensor becomes the
projection's input. The editors that need other TransformerLens hook points (BitFit, LoRA, RED,
steering's ``hook_attn_out``) say so when attached here.

Example (a tiny random Llama saved by the test helpers):
    >>> import tempfile, torch
    >>> from jola_lens.testing import save_tiny_checkpoint
    >>> from jola_lens.backends.hf import load_hf_backend
    >>> m = load_hf_backend(save_tiny_checkpoint(tempfile.mkdtemp() + "/tiny"))
    >>> m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_head, m.cfg.backend
    (2, 4, 8, 'hf')
    >>> "blocks.1.attn.hook_z" in m.hook_dict
    True
    >>> m(torch.tensor([[1, 2, 3]])).shape
    torch.Size([1, 3, 39])
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens.hook_points import HookPoint

from ..loading import _tokenizer_prepends_bos

try:  # TransformerLens 3.x (and 4.x's preferred home)
    from transformer_lens import HookedRootModule
except ImportError:  # pragma: no cover - older layouts
    from transformer_lens.hook_points import HookedRootModule

__all__ = ["FAMILIES", "HFBackendConfig", "HFFamily", "HFHookedModel", "HFKVCache", "load_hf_backend"]


@dataclass(frozen=True)
class HFFamily:
    """Where a family keeps the parts the hook points sit on (attribute paths, dotted)."""

    decoder: str  #: the base model, from the causal LM
    layers: str  #: the decoder layers, from the base model
    o_proj: str  #: the attention output projection, from a layer
    mlp_out: str  #: the module whose output is the MLP's contribution to the residual, from a layer
    final_norm: str  #: the last norm, from the base model
    norm: str = "RMS"  #: "RMS" or "LN"
    conv1d: bool = False  #: GPT-2's Conv1D projections (weight ``[in, out]``)


_LLAMA_LIKE = HFFamily("model", "layers", "self_attn.o_proj", "mlp", "norm")
#: model_type -> where its parts are
FAMILIES: dict[str, HFFamily] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": dataclasses.replace(_LLAMA_LIKE, mlp_out="post_feedforward_layernorm"),
    "olmo2": dataclasses.replace(_LLAMA_LIKE, mlp_out="post_feedforward_layernorm"),
    "phi3": _LLAMA_LIKE,
    "gpt2": HFFamily("transformer", "h", "attn.c_proj", "mlp", "ln_f", norm="LN", conv1d=True),
    "gpt_neox": HFFamily("gpt_neox", "layers", "attention.dense", "mlp", "final_layer_norm", norm="LN"),
}


@dataclass
class HFBackendConfig:
    """The HookedTransformerConfig fields the library reads, for an HF model (``model.cfg``)."""

    model_name: str
    original_architecture: str
    model_type: str
    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    d_vocab: int
    n_ctx: int
    n_key_value_heads: int | None = None
    d_mlp: int | None = None
    normalization_type: str = "RMS"
    default_prepend_bos: bool = False
    tokenizer_prepends_bos: bool = False
    output_logits_soft_cap: float = -1.0
    device: Any = "cpu"
    dtype: torch.dtype = torch.float32
    backend: str = "hf"
    checkpoint: str | None = None  #: the folder the weights came from (for the run record and export)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["dtype"] = str(self.dtype).replace("torch.", "")
        out["device"] = str(self.device)
        return out


def _get(obj: Any, path: str, unwrap: bool = False) -> Any:
    """``obj.a.b.c`` for ``path="a.b.c"``; with ``unwrap``, looking through TransformerBridge's
    wrappers (their ``_original_component``) to the HF modules that hold the weights."""
    for part in path.split("."):
        obj = getattr(obj, part)
        if unwrap:
            obj = getattr(obj, "_original_component", obj)
    return obj


class _Stop(Exception):
    """Raised by the stop hook to end a forward pass after ``stop_at_layer`` layers."""


class _Block(nn.Module):
    """The hook points of one layer, and the torch hooks that feed them (bound methods, so a
    ``deepcopy`` of the model wires the copy to the copy's hook points)."""

    def __init__(self, n_heads: int, d_head: int) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.hook_z = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()
        self.n_heads, self.d_head = n_heads, d_head

    def on_o_proj_input(self, module: nn.Module, args: tuple) -> tuple | None:
        hp = self.attn.hook_z
        if not hp._forward_hooks:  # nothing attached: leave the call as it is
            return None
        x = args[0]
        z = x.reshape(*x.shape[:-1], self.n_heads, self.d_head)
        out = hp(z)
        return (out.reshape(x.shape), *args[1:])

    def on_mlp_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        hp = self.hook_mlp_out
        if not hp._forward_hooks:
            return None
        return hp(output)

    def on_layer_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        hp = self.hook_resid_post
        if not hp._forward_hooks:
            return None
        if isinstance(output, tuple):
            return (hp(output[0]), *output[1:])
        return hp(output)


class HFKVCache:
    """A KV cache for :class:`HFHookedModel` with the interface the evaluation code uses of
    TransformerLens's: the attention mask of what it holds (``previous_attention_mask``),
    :meth:`freeze` (later passes read it and add nothing), :meth:`select_rows` (a copy with rows
    picked, repeats allowed) and :meth:`get_seq_length`."""

    def __init__(self, batch: int, device: Any) -> None:
        from transformers import DynamicCache

        self.hf = DynamicCache()
        self.previous_attention_mask = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.frozen = False

    def get_seq_length(self) -> int:
        return int(self.previous_attention_mask.shape[1])

    def freeze(self) -> None:
        self.frozen = True

    def select_rows(self, rows: Tensor) -> "HFKVCache":
        out = copy.copy(self)
        out.hf = copy.deepcopy(self.hf)
        out.hf.reorder_cache(rows)
        out.previous_attention_mask = self.previous_attention_mask[rows.to(self.previous_attention_mask.device)]
        return out


class HFHookedModel(HookedRootModule):
    """A ``transformers`` causal LM that the editors use like a HookedTransformer (see the module doc).

    ``model.hf`` is the wrapped HF model; its parameters are this module's parameters (frozen by
    the editors like any base model).
    """

    def __init__(self, hf_model: Any, tokenizer: Any = None, *, model_name: str | None = None,
                 checkpoint: str | None = None) -> None:
        super().__init__()
        hc = hf_model.config
        model_type = getattr(hc, "model_type", "")
        if model_type not in FAMILIES:
            raise ValueError(f"the hf backend does not know where model type {model_type!r} keeps its attention "
                             f"output projection; known: {', '.join(sorted(FAMILIES))}")
        self.family = FAMILIES[model_type]
        self.hf = hf_model
        self.tokenizer = tokenizer
        n_heads = int(getattr(hc, "num_attention_heads", None) or hc.n_head)
        d_model = int(getattr(hc, "hidden_size", None) or hc.n_embd)
        d_head = int(getattr(hc, "head_dim", None) or d_model // n_heads)
        n_layers = int(getattr(hc, "num_hidden_layers", None) or hc.n_layer)
        n_kv = getattr(hc, "num_key_value_heads", None)
        p = next(hf_model.parameters())
        prepends = tokenizer is not None and _tokenizer_prepends_bos(tokenizer)
        arch = (getattr(hc, "architectures", None) or [type(hf_model).__name__])[0]
        self.cfg = HFBackendConfig(
            model_name=model_name or str(getattr(hc, "_name_or_path", "") or arch),
            original_architecture=arch,
            model_type=model_type,
            n_layers=n_layers,
            n_heads=n_heads,
            d_head=d_head,
            d_model=d_model,
            d_vocab=int(hc.vocab_size),
            n_ctx=int(getattr(hc, "max_position_embeddings", None) or getattr(hc, "n_positions", 2048)),
            n_key_value_heads=int(n_kv) if n_kv and n_kv != n_heads else None,
            d_mlp=getattr(hc, "intermediate_size", None) or getattr(hc, "n_inner", None),
            normalization_type=self.family.norm,
            default_prepend_bos=prepends,
            tokenizer_prepends_bos=prepends,
            output_logits_soft_cap=float(getattr(hc, "final_logit_softcapping", None) or -1.0),
            device=p.device,
            dtype=p.dtype,
            checkpoint=checkpoint,
        )
        # the decoder's KV-cache argument: ``cache`` in newer transformers 5.x, ``past_key_values`` before
        params = inspect.signature(type(self.decoder).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._handles: list[Any] = []
        self._install_hook_points()
        for q in self.hf.parameters():
            q.requires_grad_(False)
        self.hf.eval()

    def _install_hook_points(self) -> None:
        """Hook points of our own, fed by torch hooks on the HF modules (the bridge backend uses its own)."""
        self.blocks = nn.ModuleList(_Block(self.cfg.n_heads, self.cfg.d_head) for _ in range(self.cfg.n_layers))
        self.rewire()
        self.setup()  # HookedRootModule: hook_dict, mod_dict, run_with_hooks, hooks(), run_with_cache

    # ---- wiring --------------------------------------------------------------------------------
    @property
    def decoder(self) -> nn.Module:
        return _get(self.hf, self.family.decoder)

    @property
    def layers(self) -> nn.ModuleList:
        return _get(self.decoder, self.family.layers)

    def o_proj(self, layer: int) -> nn.Module:
        return _get(self.layers[layer], self.family.o_proj, unwrap=True)

    @property
    def ln_final(self) -> nn.Module:
        """The last norm (TransformerLens's ``ln_final``)."""
        return _get(self.decoder, self.family.final_norm)

    @property
    def unembed(self) -> nn.Module:
        """The unembedding (``lm_head``), applied to normed residual vectors."""
        return self.hf.get_output_embeddings()

    def rewire(self) -> None:
        """(Re)attach the torch hooks that feed the hook points (after ``strip_hooks`` on a copy)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        for layer, block in zip(self.layers, self.blocks):
            self._handles.append(_get(layer, self.family.o_proj).register_forward_pre_hook(block.on_o_proj_input))
            self._handles.append(_get(layer, self.family.mlp_out).register_forward_hook(block.on_mlp_output))
            self._handles.append(layer.register_forward_hook(block.on_layer_output))

    def fingerprint_params(self) -> dict[str, Tensor]:
        """The tensors :func:`~jola_lens.editors.base.weight_fingerprint` samples, under TransformerLens's
        names and in its layout, so an edit saved on one backend is recognised on another."""
        c = self.cfg
        out: dict[str, Tensor] = {}
        emb = self.hf.get_input_embeddings().weight
        out["embed.W_E"] = emb
        layer0, last = self.layers[0], self.layers[c.n_layers - 1]

        def find(obj: Any, path: str) -> Any:
            try:
                return _get(obj, path, unwrap=True)
            except AttributeError:
                return None

        q = find(layer0, "self_attn.q_proj")
        if q is not None:
            out["blocks.0.attn.W_Q"] = q.weight.view(c.n_heads, c.d_head, c.d_model).transpose(1, 2)
        down = find(last, "mlp.down_proj")
        if down is not None:
            out[f"blocks.{c.n_layers - 1}.mlp.W_out"] = down.weight.T
        out["unembed.W_U"] = self.unembed.weight.T
        return out

    # ---- memory ----------------------------------------------------------------------------------
    def gradient_checkpointing_enable(self) -> None:
        """Recompute each decoder layer in the backward pass instead of storing its activations
        (``transformers``' own checkpointing, non-reentrant, RNG state kept, so a gate sample is
        redrawn identically). The base model stays in eval mode: only the layers' own flag is set
        while a forward pass with gradients runs, so no dropout switches on."""
        enable = getattr(self.hf, "activation_checkpointing_enable", None)  # the name since transformers 5.x
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            self.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.hf.eval()
        self.checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        disable = getattr(self.hf, "activation_checkpointing_disable", None)
        (disable or self.hf.gradient_checkpointing_disable)()
        self.hf.eval()
        self.checkpointing = False

    checkpointing = False

    # ---- forward -------------------------------------------------------------------------------
    def init_kv_cache(self, batch: int) -> HFKVCache:
        """An empty cache for ``batch`` rows (the evaluation code's prefill / decoding loop)."""
        return HFKVCache(batch, self.cfg.device)

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: HFKVCache | None = None,
        return_type: str | None = "logits",
    ) -> Float[Tensor, "batch pos d_vocab"] | Float[Tensor, "batch pos d_model"] | None:
        """Logits (``return_type="logits"``), or with ``stop_at_layer=k`` the residual stream after
        ``k`` layers (``k == n_layers``: before the last norm, as TransformerLens returns it)."""
        if isinstance(tokens, str) or (isinstance(tokens, list) and tokens and isinstance(tokens[0], str)):
            tokens = self.to_tokens(tokens)
        device = self.cfg.device
        tokens = tokens.to(device)
        b, n = tokens.shape
        if attention_mask is None:
            mask = torch.ones(b, n, dtype=torch.long, device=device)
        else:
            mask = attention_mask.to(device)
        kw: dict[str, Any] = {}
        if past_kv_cache is not None:
            full = torch.cat([past_kv_cache.previous_attention_mask, mask.long()], dim=1)
            past = past_kv_cache.get_seq_length()
            kw.update({self._cache_kwarg: past_kv_cache.hf, "use_cache": True})
        else:
            full, past = mask.long(), 0
            kw["use_cache"] = False
        # left padding: a row's positions count its real tokens (as TransformerLens and HF generate do)
        pos = (full.cumsum(-1) - 1).clamp(min=0)[:, past:]
        captured: dict[str, Tensor] = {}
        handle = None
        k = self.cfg.n_layers if stop_at_layer is None else int(stop_at_layer)
        if stop_at_layer is not None and k < self.cfg.n_layers:
            if k <= 0:
                raise ValueError("stop_at_layer must be at least 1 on the hf backend")

            def stop(module: Any, args: Any, output: Any) -> None:
                captured["x"] = output[0] if isinstance(output, tuple) else output
                raise _Stop

            handle = self.layers[k - 1].register_forward_hook(stop)
        elif stop_at_layer is not None:
            handle = self.ln_final.register_forward_pre_hook(lambda m, a: captured.__setitem__("x", a[0]))
        recompute = self.checkpointing and torch.is_grad_enabled() and past_kv_cache is None
        if recompute:
            for layer in self.layers:  # the layer's own flag only: its submodules (dropout) stay in eval
                layer.training = True
        try:
            out = self.decoder(input_ids=tokens, attention_mask=full, position_ids=pos, **kw)
        except _Stop:
            out = None
        finally:
            if handle is not None:
                handle.remove()
            if recompute:
                for layer in self.layers:
                    layer.training = False
        if past_kv_cache is not None and out is not None:
            if past_kv_cache.frozen:
                added = past_kv_cache.hf.get_seq_length() - past
                if added > 0:  # a negative crop removes that many tokens (transformers 4.x and 5.x)
                    past_kv_cache.hf.crop(-added)
            else:
                past_kv_cache.previous_attention_mask = full
        if stop_at_layer is not None:
            return captured["x"]
        if return_type is None:
            return None
        logits = self.unembed(out.last_hidden_state)
        cap = self.cfg.output_logits_soft_cap
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return logits

    # ---- conveniences ----------------------------------------------------------------------
    def to_tokens(self, text: str | list[str], prepend_bos: bool | None = None) -> Int[Tensor, "batch pos"]:
        """Token ids of ``text`` (one row per string, right-padded), BOS first when the tokenizer adds one."""
        if self.tokenizer is None:
            raise ValueError("this model has no tokenizer")
        texts = [text] if isinstance(text, str) else list(text)
        bos = self.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
        rows = [list(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
        if bos and self.tokenizer.bos_token_id is not None:
            rows = [[self.tokenizer.bos_token_id, *r] for r in rows]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.cfg.device)

    def to(self, *args: Any, **kwargs: Any) -> "HFHookedModel":
        super().to(*args, **kwargs)
        p = next(self.hf.parameters())
        self.cfg.device, self.cfg.dtype = p.device, p.dtype
        return self

    def generate(self, input: str | Tensor, max_new_tokens: int = 10, do_sample: bool = False,
                 verbose: bool = False, **kwargs: Any) -> str | Tensor:
        """Greedy generation by ``transformers``' own ``generate`` (KV cache), with whatever hooks
        are attached; a string in gives a string out (prompt included), as TransformerLens does."""
        text_in = isinstance(input, str)
        tokens = self.to_tokens(input) if text_in else input.to(self.cfg.device)
        pad = getattr(self.tokenizer, "pad_token_id", None)
        eos = getattr(self.tokenizer, "eos_token_id", None)
        out = self.hf.generate(tokens, attention_mask=torch.ones_like(tokens), max_new_tokens=max_new_tokens,
                               do_sample=do_sample, pad_token_id=pad if pad is not None else eos, **kwargs)
        if text_in:
            return self.tokenizer.decode(out[0], skip_special_tokens=False)
        return out


def load_hf_backend(path: str | Path, *, device: str = "cpu", dtype: torch.dtype = torch.float32,
                    model_name: str | None = None, attn_implementation: str | None = None,
                    device_map: Any = None, offload_folder: str | Path | None = None) -> HFHookedModel:
    """Load a local HF checkpoint folder (``config.json`` + weights + tokenizer) as :class:`HFHookedModel`.

    ``device_map`` (``"auto"``, or a dict of module names to ``"cpu"``, ``"disk"``, a GPU index...) hands
    placement to accelerate's big-model loading (``from_pretrained(device_map=..., offload_folder=...)``):
    a frozen base larger than one device is spread over several, the CPU and the disk; ``device`` is then
    not used. The edit hooks sit in front of each output projection's own forward, so they see the same
    inputs wherever its weights live."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    kw: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if device_map is not None:
        kw["device_map"] = device_map
        if offload_folder is not None:
            kw["offload_folder"] = str(offload_folder)
        hf = AutoModelForCausalLM.from_pretrained(path, **kw)
    else:
        hf = AutoModelForCausalLM.from_pretrained(path, **kw).to(device)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception:  # a weights-only folder: token-id functions still work
        tok = None
    return HFHookedModel(hf, tok, model_name=model_name, checkpoint=str(path))


# ---- folding an edit into the HF weights (merge, export) ------------------------------------------
def ensure_bias(linear: nn.Module, size: int) -> Tensor:
    """``linear``'s bias, a new zero one of ``size`` (frozen, its weight's dtype and device) where it has none."""
    if getattr(linear, "bias", None) is None:
        w = linear.weight
        linear.bias = nn.Parameter(torch.zeros(size, dtype=w.dtype, device=w.device), requires_grad=False)
    return linear.bias


@torch.no_grad()
def fold_head_edit(model: HFHookedModel, layer: int, scale: Float[Tensor, "n_heads d_head"],
                   shift: Float[Tensor, "n_heads d_head"]) -> None:
    """Fold ``z' = scale * z + shift`` (per head, at ``hook_z``) into layer ``layer``'s output
    projection: its input columns are scaled, ``shift`` projected into its bias (one is added
    where the projection has none). Exact up to float rounding."""
    o = model.o_proj(layer)
    w = o.weight
    s = scale.reshape(-1).to(w.dtype)
    c = shift.reshape(-1).to(w.dtype)
    shifted = bool(c.any())  # a bias is added only where there is something to put in it
    if model.family.conv1d:  # Conv1D: y = x W + b, W [in, out]
        if shifted:
            ensure_bias(o, w.shape[1]).add_(c @ w)
        w.mul_(s[:, None])
    else:  # Linear: y = x W^T + b, W [out, in]
        if shifted:
            ensure_bias(o, w.shape[0]).add_(w @ c)
        w.mul_(s[None, :])


@torch.no_grad()
def fold_mlp_edit(model: HFHookedModel, layer: int, scale: Float[Tensor, " d_model"],
                  shift: Float[Tensor, " d_model"]) -> None:
    """Fold ``y' = scale * y + shift`` on the MLP output (``hook_mlp_out``) into its down projection."""
    if model.family.mlp_out != "mlp":
        raise NotImplementedError(f"{model.cfg.original_architecture} normalises the MLP output after the down "
                                  "projection: an MLP-site edit does not fold into its weights")
    mlp = model.layers[layer].mlp
    down = next((getattr(mlp, n) for n in ("down_proj", "c_proj", "dense_4h_to_h", "fc2") if hasattr(mlp, n)), None)
    if down is None:
        raise NotImplementedError(f"no down projection found in {type(mlp).__name__}")
    w = down.weight
    s, c = scale.to(w.dtype), shift.to(w.dtype)
    conv = model.family.conv1d
    bias = ensure_bias(down, w.shape[1] if conv else w.shape[0])
    bias.copy_(bias * s + c)
    w.mul_(s[None, :] if conv else s[:, None])
