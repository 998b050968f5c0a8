"""A lean decoding path over a HookedTransformer's own weights (issue 25).

TransformerLens's attention re-lays its weights out on every call (``W_Q`` as ``[head, d_model, d_head]``
becomes a ``[d_model, head * d_head]`` copy; a grouped-query model's ``W_K`` / ``W_V`` are repeated to
every query head), appends to its KV cache by concatenation, and rotates the whole cached key again at
every step. On a CPU decoding step, where each matrix product has only a few rows, those copies cost
about as much as the products. :class:`LeanView` runs the same computation without them:

- the attention weights are laid out once per view (``[d_model, heads * d_head]``, no repetition:
  ``scaled_dot_product_attention`` with ``enable_gqa`` pairs each query head with its key head as
  TransformerLens's ``repeat_interleave`` does);
- keys are rotated once, when they enter a preallocated cache, with TransformerLens's own rotary
  tables and position rule (the attention mask's running count);
- every other part is the block's own module, called as TransformerLens calls it: the norms, the MLP,
  and the hook points ``hook_embed``, ``hook_resid_pre``, ``attn.hook_z``, ``hook_attn_out``,
  ``hook_resid_mid``, ``hook_mlp_out``, ``hook_resid_post``, so an edit hooked on any of them (JoLA,
  LoFiT, ITI, RED, LoReFT, steering) runs unchanged.

:func:`lean_view` returns ``None`` (the caller keeps TransformerLens's forward) for anything else: a hook
on a hook point the view does not call (``hook_q``, ``hook_v``, ``hook_pattern``...: LoRA, BitFit),
a plain torch hook on a block, and architectures outside the rotary, causal, sequential-block family
(learned positions, ALiBi, soft caps, QK norms, post-norms, attention sinks, parallel blocks).

Example (a tiny random model: the view's residual stream is the model's own)::

    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_vocab=50,
    ...     act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True,
    ...     n_key_value_heads=2, d_mlp=32)
    >>> model = HookedTransformer(cfg)
    >>> view = lean_view(model)
    >>> tokens = torch.randint(0, 50, (2, 7))
    >>> ours = view(tokens, stop_at_layer=2)
    >>> torch.allclose(ours, model(tokens, stop_at_layer=2), atol=1e-5)
    True
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["ENABLED", "LeanKVCache", "LeanView", "decoding_model", "lean_unsupported", "lean_view"]

#: the most memory the view's laid-out attention weights may take (``JOLA_LENS_LEAN_MAX_MB``; 2048 MB): a
#: larger model keeps TransformerLens's forward rather than hold a second copy of its attention weights
MAX_BYTES = int(float(os.environ.get("JOLA_LENS_LEAN_MAX_MB", "2048")) * 2**20)

#: whether scoring and generation use the view where it applies (``JOLA_LENS_LEAN=0`` in the environment:
#: off, TransformerLens's own forward everywhere; the benchmark times both)
ENABLED = os.environ.get("JOLA_LENS_LEAN", "1").strip() not in ("0", "false", "no")

#: hook points the view calls (per block; ``hook_embed`` at the top): hooks anywhere else send the
#: caller back to TransformerLens's forward
_BLOCK_HOOKS = ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post")


def _has_hooks(module: Any) -> bool:
    return bool(getattr(module, "_forward_hooks", None) or getattr(module, "_forward_pre_hooks", None)
                or getattr(module, "_backward_hooks", None))


def lean_unsupported(model: Any) -> str | None:
    """Why :class:`LeanView` cannot stand in for ``model``'s forward right now (``None``: it can)."""
    try:
        from transformer_lens import HookedTransformer
        from transformer_lens.components import TransformerBlock
    except ImportError:  # TransformerLens 4.x: no HookedTransformer
        return "no HookedTransformer"
    if not isinstance(model, HookedTransformer):
        return f"{type(model).__name__} is not a HookedTransformer"
    c = model.cfg
    checks = {
        "positions are not rotary": c.positional_embedding_type != "rotary",
        "attention is not causal": c.attention_dir != "causal",
        "soft-capped attention scores": (c.attn_scores_soft_cap or -1) > 0,
        "split or separate attention inputs": c.use_split_qkv_input or c.use_attn_in or c.use_attn_result,
        "hooked MLP input": getattr(c, "use_hook_mlp_in", False),
        "hooked tokens": getattr(c, "use_hook_tokens", False),
        "parallel attention and MLP": c.parallel_attn_mlp,
        "QK norm": getattr(c, "use_qk_norm", False),
        "clipped QKV": getattr(c, "clip_qkv", None) is not None,
        "dynamic NTK rotary": getattr(c, "use_dynamic_ntk_rope", False),
        "log-n attention": getattr(c, "use_logn_attn", False),
        "attention sinks": getattr(c, "use_attention_sinks", False),
        "4-bit weights": getattr(c, "load_in_4bit", False),
        "weights spread over devices": getattr(c, "n_devices", 1) != 1,
        "no normalisation": c.normalization_type is None,
    }
    for why, bad in checks.items():
        if bad:
            return why
    if c.original_architecture in ("OlmoeForCausalLM", "Olmo2ForCausalLM", "Olmo3ForCausalLM"):
        return "OLMo QK norm"
    a0 = model.blocks[0].attn
    kv = a0._W_K if hasattr(a0, "_W_K") else a0.W_K  # grouped-query attention: its unrepeated heads
    per_layer = a0.W_Q.numel() + 2 * kv.numel()  # W_Q, W_K and W_V (W_O's layout is a view, no copy)
    extra = per_layer * c.n_layers * a0.W_Q.element_size()
    if extra > MAX_BYTES:
        return (f"its laid-out attention weights would take {extra / 2**20:,.0f} MB "
                f"(more than JOLA_LENS_LEAN_MAX_MB={MAX_BYTES / 2**20:,.0f})")
    if _has_hooks(model.embed) or getattr(model, "_forward_hooks", None):
        return "a torch hook on the model"
    for hook in getattr(model, "_forward_pre_hooks", {}).values():
        if not _reads_only(hook):
            return "a forward pre-hook on the model"
    for i, block in enumerate(model.blocks):
        if type(block) is not TransformerBlock or hasattr(block, "ln1_post") or hasattr(block, "ln2_post"):
            return f"block {i} is not a plain pre-norm block"
        if _has_hooks(block) or _has_hooks(block.attn):
            return f"a torch hook on block {i}"
        for name, hp in block.attn.named_children():
            if name.startswith("hook_") and name != "hook_z" and _has_hooks(hp):
                return f"a hook on blocks.{i}.attn.{name}"
        for name, hp in block.named_children():
            if name.startswith("hook_") and name not in _BLOCK_HOOKS and _has_hooks(hp):
                return f"a hook on blocks.{i}.{name}"
    return None


def _reads_only(hook: Any) -> bool:
    """A model-level pre-hook the view can call as the model's forward would: one that only reads the
    call's arguments (the editors' prompt-position tracker)."""
    from ..editors.base import PromptPositions

    return isinstance(getattr(hook, "__self__", None), PromptPositions)


def lean_view(model: Any) -> "LeanView | None":
    """A :class:`LeanView` of ``model``, or ``None`` where :func:`lean_unsupported` names a reason."""
    return None if lean_unsupported(model) is not None else LeanView(model, _checked=True)


def decoding_model(hooked: Any) -> Any:
    """What scoring and generation run: a :class:`LeanView` of ``hooked`` where one applies (call it with
    the edit's hooks attached: they decide) and :data:`ENABLED`, else ``hooked`` itself."""
    if not ENABLED:
        return hooked
    view = lean_view(hooked)
    return hooked if view is None else view


class LeanKVCache:
    """Rotated keys and values per layer, ``[batch, kv_heads, capacity, d_head]``, filled up to ``length``,
    and the attention mask of the cached positions. ``frozen``: a forward reads it without adding to it."""

    def __init__(self, n_layers: int, batch: int, device: Any) -> None:
        self.keys: list[Tensor | None] = [None] * n_layers
        self.values: list[Tensor | None] = [None] * n_layers
        self.length = 0
        self.previous_attention_mask = torch.zeros(batch, 0, dtype=torch.long, device=device)
        self.frozen = False

    def freeze(self) -> None:
        self.frozen = True

    def get_seq_length(self) -> int:
        """Cached positions (the name the hf backend's cache and the editors' position tracker use)."""
        return self.length

    def select_rows(self, rows: Tensor) -> "LeanKVCache":
        """A cache of ``rows`` (an index tensor; repeats allowed) of this one; this one is kept."""
        out = LeanKVCache(0, 0, rows.device)
        keep = self.length + 16  # the filled slots and a few free ones (a short continuation writes there)
        out.keys = [None if k is None else k[rows.to(k.device), :, :keep] for k in self.keys]
        out.values = [None if v is None else v[rows.to(v.device), :, :keep] for v in self.values]
        out.length = self.length
        out.previous_attention_mask = self.previous_attention_mask[rows.to(self.previous_attention_mask.device)]
        out.frozen = self.frozen
        return out

    def _store(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's keys and values with ``k`` / ``v`` (``[batch, kv_heads, new, d_head]``) after them."""
        past, new = self.length, k.shape[2]
        if self.frozen:
            old_k, old_v = self.keys[layer], self.values[layer]
            if old_k is None or old_v is None:
                return k, v
            if old_k.shape[2] >= past + new and old_k.shape[0] == k.shape[0]:
                # the slots after ``length`` are free: write there, read up to them, keep ``length``
                old_k[:, :, past : past + new] = k
                old_v[:, :, past : past + new] = v
                return old_k[:, :, : past + new], old_v[:, :, : past + new]
            return torch.cat([old_k[:, :, :past], k], dim=2), torch.cat([old_v[:, :, :past], v], dim=2)
        buf_k, buf_v = self.keys[layer], self.values[layer]
        if buf_k is None or buf_v is None or buf_k.shape[2] < past + new:
            cap = max(past + new + 64, 2 * (buf_k.shape[2] if buf_k is not None else 0))
            grown_k = k.new_empty(k.shape[0], k.shape[1], cap, k.shape[3])
            grown_v = v.new_empty(v.shape[0], v.shape[1], cap, v.shape[3])
            if buf_k is not None and buf_v is not None and past:
                grown_k[:, :, :past] = buf_k[:, :, :past]
                grown_v[:, :, :past] = buf_v[:, :, :past]
            buf_k, buf_v = grown_k, grown_v
            self.keys[layer], self.values[layer] = buf_k, buf_v
        buf_k[:, :, past : past + new] = k
        buf_v[:, :, past : past + new] = v
        return buf_k[:, :, : past + new], buf_v[:, :, : past + new]


class LeanView(torch.nn.Module):
    """``model``'s forward (residual stream or logits, optionally on a :class:`LeanKVCache`) with its
    attention weights laid out once; see the module's docstring. Built per use: the layout copies the
    attention weights as they are now (a later change to them needs a new view)."""

    def __init__(self, model: Any, _checked: bool = False) -> None:
        super().__init__()
        why = None if _checked else lean_unsupported(model)  # lean_view has just asked
        if why is not None:
            raise ValueError(f"LeanView cannot run this model: {why}")
        self.model = model
        self.cfg = model.cfg
        c = model.cfg
        self.tokenizer = getattr(model, "tokenizer", None)
        self._w: list[tuple[Tensor, ...]] = []
        with torch.no_grad():
            for block in model.blocks:
                a = block.attn
                wk = getattr(a, "_W_K", a.W_K)  # grouped-query attention keeps its kv heads unrepeated
                wv = getattr(a, "_W_V", a.W_V)
                bk = getattr(a, "_b_K", a.b_K)
                bv = getattr(a, "_b_V", a.b_V)
                d = c.d_model
                self._w.append((
                    a.W_Q.permute(1, 0, 2).reshape(d, -1).contiguous(), a.b_Q.reshape(-1),
                    wk.permute(1, 0, 2).reshape(d, -1).contiguous(), bk.reshape(-1),
                    wv.permute(1, 0, 2).reshape(d, -1).contiguous(), bv.reshape(-1),
                    a.W_O.reshape(-1, d), a.b_O,
                ))
        self.n_kv = self._w[0][2].shape[1] // c.d_head
        a0 = model.blocks[0].attn
        # one rotation for every layer where their tables agree (they are built from the same settings)
        self._shared_rotary = all(torch.equal(b.attn.rotary_cos, a0.rotary_cos)
                                  and torch.equal(b.attn.rotary_sin, a0.rotary_sin) for b in model.blocks)

    @property
    def ln_final(self) -> Any:
        return self.model.ln_final

    @property
    def unembed(self) -> Any:
        return self.model.unembed

    def init_kv_cache(self, batch: int) -> LeanKVCache:
        return LeanKVCache(self.cfg.n_layers, batch, self.cfg.device)

    def forward(
        self,
        tokens: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"] | None = None,
        stop_at_layer: int | None = None,
        past_kv_cache: LeanKVCache | None = None,
    ) -> Float[Tensor, "batch pos d_model"] | Float[Tensor, "batch pos d_vocab"]:
        """The residual stream after ``stop_at_layer`` blocks (before the last norm when all of them run,
        as TransformerLens returns it), or the logits without ``stop_at_layer``."""
        m, c = self.model, self.cfg
        device = c.device
        tokens = tokens.to(device)
        b, n = tokens.shape
        mask = (torch.ones(b, n, dtype=torch.long, device=device) if attention_mask is None
                else attention_mask.to(device).long())
        cache = past_kv_cache
        past = cache.length if cache is not None else 0
        full = torch.cat([cache.previous_attention_mask, mask], dim=1) if cache is not None else mask
        total = past + n
        # key j is seen from query i when it is a real token and j <= past + i (TransformerLens's rule); a
        # query that sees nothing (a pad position before its row's first token) gets z = 0, as there
        causal = torch.arange(total, device=device)[None, :] <= (past + torch.arange(n, device=device))[:, None]
        allowed = causal[None, None] & full.bool()[:, None, None, :]  # [batch, 1, n, total]
        sees = allowed.any(-1, keepdim=True)  # [batch, 1, n, 1]
        allowed = allowed | ~sees  # such rows attend to everything; their z is zeroed below
        zero_rows = None if bool(sees.all()) else sees.transpose(1, 2).to(m.embed.W_E.dtype)  # [batch, n, 1, 1]
        # the model's own pre-hooks (they only read: lean_unsupported checked) see the call as its forward would
        for key, hook in list(m._forward_pre_hooks.items()):
            if key in m._forward_pre_hooks_with_kwargs:
                hook(m, (tokens,), {"attention_mask": mask, "past_kv_cache": cache, "stop_at_layer": stop_at_layer})
            else:
                hook(m, (tokens,))
        x = m.hook_embed(m.embed(tokens))
        stop = c.n_layers if stop_at_layer is None else int(stop_at_layer)
        rot = self._rotation(past, n, full) if self._shared_rotary else None
        for i in range(stop):
            x = self._block(i, x, past, full, allowed, zero_rows, cache, rot)
        if cache is not None and not cache.frozen:
            cache.length = total
            cache.previous_attention_mask = full
        if stop_at_layer is not None:
            return x
        return m.unembed(m.ln_final(x))

    def _rotation(self, past: int, n: int, full: Tensor) -> tuple[Tensor, Tensor]:
        """cos and sin ``[batch, n, 1, rotary_dim]`` at the new positions, as TransformerLens's
        ``apply_rotary`` picks them (the mask's running count; its tables grown first if too short)."""
        from transformer_lens.utilities import get_offset_position_ids

        a = self.model.blocks[0].attn
        if past + n > a.rotary_cos.shape[0]:  # TransformerLens extends its tables on the way: let it
            for b in self.model.blocks:
                b.attn.apply_rotary(torch.zeros(1, past + n, 1, self.cfg.d_head, device=a.rotary_cos.device), 0)
        pos = get_offset_position_ids(past, full).to(a.rotary_cos.device)
        return a.rotary_cos[pos, None, :], a.rotary_sin[pos, None, :]

    def _rotate(self, a: Any, x: Tensor, rot: tuple[Tensor, Tensor]) -> Tensor:
        cos, sin = rot
        r = self.cfg.rotary_dim
        x_rot = x[..., :r]
        out = x_rot * cos + a.rotate_every_two(x_rot) * sin
        return out if r == x.shape[-1] else torch.cat([out, x[..., r:]], dim=-1)

    def _block(self, i: int, x: Tensor, past: int, full: Tensor, allowed: Tensor, zero_rows: Tensor | None,
               cache: LeanKVCache | None, rot: tuple[Tensor, Tensor] | None = None) -> Tensor:
        block = self.model.blocks[i]
        a = block.attn
        c = self.cfg
        wq, bq, wk, bk, wv, bv, wo, bo = self._w[i]
        b, n, d = x.shape
        x = block.hook_resid_pre(x)
        h = block.ln1(x).reshape(b * n, d)
        q = torch.addmm(bq, h, wq).view(b, n, c.n_heads, c.d_head)
        k = torch.addmm(bk, h, wk).view(b, n, self.n_kv, c.d_head)
        v = torch.addmm(bv, h, wv).view(b, n, self.n_kv, c.d_head)
        # TransformerLens's own rotation: positions from the mask's running count, offset by the cache
        if rot is not None:
            q, k = self._rotate(a, q, rot), self._rotate(a, k, rot)
        else:
            q = a.apply_rotary(q, past, full)
            k = a.apply_rotary(k, past, full)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if cache is not None:
            k, v = cache._store(i, k, v)
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=1.0 / float(a.attn_scale),
                                           enable_gqa=self.n_kv != c.n_heads)
        z = z.transpose(1, 2)  # [batch, n, heads, d_head]
        if zero_rows is not None:
            z = z * zero_rows
        z = a.hook_z(z)
        attn_out = torch.addmm(bo, z.reshape(b * n, -1), wo).view(b, n, d)
        attn_out = block.hook_attn_out(attn_out)
        x = block.hook_resid_mid(x + attn_out)
        mlp_out = block.hook_mlp_out(block.mlp(block.ln2(x)))
        return block.hook_resid_post(x + mlp_out)
