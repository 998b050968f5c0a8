"""Shared fixtures: a tiny random HookedTransformer (unit tests) and the bundled SmolLM2 (integration)."""

from __future__ import annotations

import os

for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:  # imported where used: TransformerLens 4.x (make test-tl4) has no HookedTransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig


def tiny_cfg(**overrides) -> HookedTransformerConfig:
    """A Llama-shaped tiny model: RMS norm, rotary, gated SiLU MLP, grouped-query attention."""
    from transformer_lens import HookedTransformerConfig

    kw = dict(
        n_layers=3,
        d_model=32,
        n_ctx=64,
        d_head=8,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=48,
        d_vocab=97,
        act_fn="silu",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_dim=8,
        gated_mlp=True,
        final_rms=True,
        default_prepend_bos=False,
        seed=0,
    )
    kw.update(overrides)
    return HookedTransformerConfig(**kw)


@pytest.fixture
def tiny_model() -> HookedTransformer:
    from transformer_lens import HookedTransformer

    torch.manual_seed(0)
    model = HookedTransformer(tiny_cfg())
    with torch.no_grad():  # non-zero biases so that merge tests cover b_O / b_out too
        for b in model.blocks:
            b.attn.b_O.normal_(0, 0.1)
            b.mlp.b_out.normal_(0, 0.1)
    return model.eval()


@pytest.fixture
def tokens() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 97, (3, 10), generator=g)


@pytest.fixture(scope="session")
def smollm():
    from jola_lens import load_model

    return load_model("smollm2", verbose=False)


@pytest.fixture(scope="session")
def shared_data():
    """The shared benchmark data folder (``ARC-Easy/``, ``boolq/``, ...): ``$JOLA_LENS_DATA`` if set,
    else ``../shared/data`` beside the repository. Tests that read it are skipped when it is absent."""
    from pathlib import Path

    env = os.environ.get("JOLA_LENS_DATA")
    path = Path(env).expanduser() if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared benchmark data not found at {path}; set JOLA_LENS_DATA")
    return path
