"""Forward-pass plumbing shared by scoring and generation: residual stream, unembedding, KV-cache prefill, batches.

Example:
    >>> length_batches([0, 1, 2], [10, 9, 2], batch_size=8)
    [[0, 1], [2]]
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import torch

__all__ = ["length_batches"]


def _device(hooked: Any) -> torch.device:
    return next(hooked.parameters()).device


def _tokenizer(hooked: Any) -> Any:
    tok = getattr(hooked, "tokenizer", None)
    if tok is None:
        raise ValueError(
            "this model has no tokenizer: use the token-id functions "
            "(score_token_continuations, generate_tokens) instead"
        )
    return tok


def _encode(tok: Any, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _bos(tok: Any) -> list[int]:
    if tok.bos_token_id is None:
        raise ValueError("prepend_bos=True but the tokenizer has no BOS token")
    return [int(tok.bos_token_id)]


def _progress(iterable: Any, *, enabled: bool, desc: str, total: int | None = None) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def _residual(hooked: Any, tokens: torch.Tensor, mask: torch.Tensor, cache: Any = None) -> torch.Tensor:
    """The final residual stream (before the last norm): every block runs, its hooks included."""
    kw = {} if cache is None else {"past_kv_cache": cache}
    return hooked(tokens, attention_mask=mask, stop_at_layer=hooked.cfg.n_layers, **kw)


def _unembed(hooked: Any, resid: torch.Tensor) -> torch.Tensor:
    """Logits from final residual vectors ``[n, d_model]``, as the model's own forward computes them.

    Unembedding only the positions that are read saves the ``[batch, pos, d_vocab]`` logits.
    """
    x = resid[None]
    if hooked.cfg.normalization_type is not None:
        x = hooked.ln_final(x)
    logits = hooked.unembed(x)[0]
    cap = getattr(hooked.cfg, "output_logits_soft_cap", -1.0) or -1.0
    if cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def _check_ctx(hooked: Any, length: int, what: str) -> None:
    n_ctx = hooked.cfg.n_ctx
    if length > n_ctx:
        raise ValueError(f"{what} has {length} tokens, more than the model's context ({n_ctx})")


def length_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut ``order`` (indices sorted by decreasing ``lengths``) into batches of at most ``batch_size``.

    A batch is padded to its first (longest) row, so a batch also ends before a row shorter than
    half of that width: one long outlier then no longer makes fifteen short rows pay for its
    length (on a CPU, where compute grows with the padded size, that made batch 16 slower than
    one row at a time on the ARC-Easy sample).

    Example:
        >>> length_batches([0, 1, 2, 3, 4], [161, 40, 35, 30, 12], 3)
        [[0], [1, 2, 3], [4]]
    """
    batches: list[list[int]] = []
    for k in order:
        if batches and len(batches[-1]) < batch_size and 2 * lengths[k] >= lengths[batches[-1][0]]:
            batches[-1].append(k)
        else:
            batches.append([k])
    return batches


def _kv_cache_class() -> Any:
    try:  # TransformerLens 3.x
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        return TransformerLensKeyValueCache
    except ImportError:  # TransformerLens 2.x
        from transformer_lens.past_key_value_caching import HookedTransformerKeyValueCache

        return HookedTransformerKeyValueCache


def _prefill(hooked: Any, prompts: list[list[int]], pad_token_id: int) -> tuple[Any, torch.Tensor]:
    """Run left-padded prompts (with their attention mask) into a new KV cache.

    Returns the cache and the final residual stream ``[n, width, d_model]``; position -1 of every
    row is its prompt's last token.
    """
    device = _device(hooked)
    n, width = len(prompts), max(len(p) for p in prompts)
    tokens = torch.full((n, width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(n, width, dtype=torch.long)
    for b, p in enumerate(prompts):
        tokens[b, width - len(p) :] = torch.tensor(p)
        mask[b, width - len(p) :] = 1
    own = getattr(hooked, "init_kv_cache", None)  # the hf backend's cache
    cache = own(n) if callable(own) else _kv_cache_class().init_cache(hooked.cfg, device, n)
    return cache, _residual(hooked, tokens.to(device), mask.to(device), cache)


def _select_cache_rows(cache: Any, rows: torch.Tensor) -> Any:
    """A KV cache holding only ``rows`` (a 1-D index tensor; repeats allowed) of ``cache``; ``cache`` is kept."""
    if hasattr(cache, "select_rows"):  # the hf and bridge backends' cache
        return cache.select_rows(rows)
    mask = cache.previous_attention_mask
    return dataclasses.replace(
        cache,
        entries=[dataclasses.replace(e, past_keys=e.past_keys[rows], past_values=e.past_values[rows])
                 for e in cache.entries],
        previous_attention_mask=mask[rows.to(mask.device)],
    )
