"""The lean decoding view (issue 25) against TransformerLens's own forward: the same residual stream
with left padding, on a KV cache, with hooks; and a fallback wherever it cannot stand in."""

from __future__ import annotations

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from jola_lens.eval import lean
from jola_lens.eval.forward import _kv_cache_class
from jola_lens.eval.lean import LeanView, decoding_model, lean_unsupported, lean_view


def _model(n_kv: int | None = 2, **kw) -> HookedTransformer:
    cfg = dict(n_layers=2, d_model=16, n_ctx=64, d_head=4, n_heads=4, d_vocab=50, act_fn="silu",
               normalization_type="RMS", positional_embedding_type="rotary", gated_mlp=True, d_mlp=32,
               n_key_value_heads=n_kv, seed=0)
    cfg.update(kw)
    return HookedTransformer(HookedTransformerConfig(**cfg))


def _left_padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    w = max(map(len, prompts))
    tok = torch.zeros(len(prompts), w, dtype=torch.long)
    mask = torch.zeros(len(prompts), w, dtype=torch.long)
    for b, p in enumerate(prompts):
        tok[b, w - len(p):] = torch.tensor(p)
        mask[b, w - len(p):] = 1
    return tok, mask


@pytest.mark.parametrize("n_kv", [None, 2, 1])
def test_prefill_and_decoding_match_transformer_lens(n_kv):
    model = _model(n_kv)
    view = lean_view(model)
    assert isinstance(view, LeanView)
    tok, mask = _left_padded([[5, 6, 7, 8, 9], [11, 12], [13, 14, 15]])
    seen: list[tuple[str, torch.Tensor]] = []

    def record(z, hook):
        seen.append((hook.name, z.clone()))
        return z * 1.5 + 0.1  # an edit on hook_z

    with torch.inference_mode(), model.hooks(fwd_hooks=[("blocks.1.attn.hook_z", record)]):
        ref_cache = _kv_cache_class().init_cache(model.cfg, model.cfg.device, 3)
        cache = view.init_kv_cache(3)
        a = model(tok, attention_mask=mask, stop_at_layer=2, past_kv_cache=ref_cache)
        b = view(tok, attention_mask=mask, stop_at_layer=2, past_kv_cache=cache)
        real = mask.bool()
        assert float((a - b)[real].abs().max()) < 1e-5
        for step in range(4):
            feed = torch.tensor([[20 + step], [30 + step], [40 + step]])
            one = torch.ones(3, 1, dtype=torch.long)
            a = model(feed, attention_mask=one, past_kv_cache=ref_cache)
            b = view(feed, attention_mask=one, past_kv_cache=cache)
            assert float((a - b).abs().max()) < 1e-5, step
        # rows leave the batch: the view's cache keeps the rows asked for
        rows = torch.tensor([2, 0])
        sub = cache.select_rows(rows)
        feed = torch.tensor([[7], [8]])
        b = view(feed, attention_mask=torch.ones(2, 1, dtype=torch.long), past_kv_cache=sub)
        full = view(torch.tensor([[7], [8], [7]]), attention_mask=torch.ones(3, 1, dtype=torch.long),
                    past_kv_cache=cache.select_rows(torch.tensor([2, 0, 2])))
        assert float((b - full[:2]).abs().max()) < 1e-5
    # the hook ran in both, on the same positions
    assert len(seen) == 2 * 5 + 2
    assert seen[0][1].shape == seen[1][1].shape == (3, 5, 4, 4)


def test_a_frozen_cache_is_read_not_grown():
    model = _model()
    view = lean_view(model)
    tok, mask = _left_padded([[5, 6, 7], [8, 9]])
    with torch.inference_mode():
        cache = view.init_kv_cache(2)
        view(tok, attention_mask=mask, stop_at_layer=2, past_kv_cache=cache)
        cache.freeze()
        feed = torch.tensor([[1, 2], [3, 0]])
        fmask = torch.tensor([[1, 1], [1, 0]])
        once = view(feed, attention_mask=fmask, stop_at_layer=2, past_kv_cache=cache)
        again = view(feed, attention_mask=fmask, stop_at_layer=2, past_kv_cache=cache)
        assert cache.length == 3 and torch.equal(once, again)
        ref = model(torch.cat([tok, feed], 1), attention_mask=torch.cat([mask, fmask], 1), stop_at_layer=2)
        assert float((ref[:, 3:] - once)[fmask.bool()].abs().max()) < 1e-5


def test_the_view_steps_aside_where_it_cannot_stand_in(monkeypatch):
    model = _model()
    assert lean_unsupported(model) is None
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_q", lambda q, hook: q)]):  # LoRA's, BitFit's hook point
        assert lean_unsupported(model) == "a hook on blocks.0.attn.hook_q"
        assert decoding_model(model) is model
    assert "not rotary" in lean_unsupported(_model(positional_embedding_type="standard"))
    assert "soft-capped" in lean_unsupported(_model(attn_scores_soft_cap=30.0))
    monkeypatch.setattr(lean, "MAX_BYTES", 100)  # a model whose attention weights would not fit beside it
    assert "laid-out attention weights would take" in lean_unsupported(model)
    monkeypatch.setattr(lean, "MAX_BYTES", 2**31)
    monkeypatch.setattr(lean, "ENABLED", False)
    assert decoding_model(model) is model
    monkeypatch.setattr(lean, "ENABLED", True)
    assert isinstance(decoding_model(model), LeanView)


def test_generation_is_the_same_with_and_without_the_view(monkeypatch):
    from jola_lens.eval import generate_tokens, score_token_continuations

    model = _model()
    prompts = [[3, 5, 7], [4, 6, 8, 10, 1], [2]]
    conts = [[[9, 11], [9, 12, 13]], [[2], [5, 6]], [[1, 2, 3], [4]]]
    runs = []
    for on in (True, False):
        monkeypatch.setattr(lean, "ENABLED", on)
        runs.append((generate_tokens(model, prompts, max_new_tokens=8, batch_size=3),
                     score_token_continuations(model, prompts, conts)))
    assert runs[0][0] == runs[1][0]
    flat = [[s for row in r[1] for s in row] for r in runs]
    assert max(abs(a - b) for a, b in zip(*flat)) < 1e-5
