"""LoFiT (Yin et al., NeurIPS 2024) as a baseline: both stages.

Stage 1 (:func:`jola_lens.selection.select` with ``"lofit"``): scaling vectors ``A`` on every
head, trained with an L1 penalty; heads ranked by ``||A||_2``; the top ``k`` kept. Stage 2: a
fresh additive offset ``v`` on those heads only (``z' = z + v``, N(0, 1e-3^2) init, no L1),
trained with the same trainer as JoLA. Defaults from LoFiT's scripts (METHODS.md 2.4): stage-1
lr 5e-3 and lambda_L1 5e-4; stage-2 lr 1e-2 (the ``fit`` config's lr is used as given);
``k`` is 10 % of the heads (LoFiT's default when unset; its scripts keep about 3 %).

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.train import TrainConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_vocab=50,
    ...                               act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> lofit = LoFiT(HookedTransformer(cfg), k=3, stage1={"epochs": 1})
    >>> _ = lofit.fit(data, None, TrainConfig(epochs=1, warmup_steps=0), progress=False)
    >>> int(lofit.mask.sum()), lofit.n_trainable_parameters()
    (3, 12)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ..config import JoLAConfig
from ..edits import HeadEdit
from .base import Editor, EditorConfig, mask_heads, resolve_config

if TYPE_CHECKING:  # pragma: no cover
    from ..train import TrainConfig, TrainResult


@dataclass
class LoFiTConfig(EditorConfig):
    """LoFiT settings: ``k`` heads kept by stage 1 (``None``: 10 % of the heads), ``stage1`` options
    of the ``"lofit"`` selector (epochs, lr, l1 ...), ``seed``."""

    k: int | None = None
    stage1: dict[str, Any] | None = None
    seed: int = 0


class LoFiT(Editor):
    backends = ("hooked", "bridge", "hf")
    name = "lofit"
    display_name = "LoFiT"
    config_cls = LoFiTConfig
    supports_merge = True

    def __init__(self, model: Any, config: LoFiTConfig | None = None, **options: Any) -> None:
        config = resolve_config(LoFiTConfig, config, options)
        super().__init__(model, config)
        c = model.cfg
        k, seed = config.k, config.seed
        self.k = max(1, round(0.1 * c.n_layers * c.n_heads)) if k is None else int(k)
        self.stage1 = dict(config.stage1 or {})
        self.seed = seed
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.edit = HeadEdit(c.n_layers, c.n_heads, c.d_head, JoLAConfig(edit="additive", gate_mode="none"))
        self.edit.set_head_mask(torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool))
        self.selection: Any = None
        self.settings = {"k": self.k, "stage1": self.stage1, "stage2": "additive v on the top-k heads"}

    @property
    def mask(self) -> Tensor:
        return self.edit.mask

    def n_trainable_parameters(self) -> int:
        return int(self.edit.mask.sum()) * self.model.cfg.d_head

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        return self.edit.fwd_hooks()

    def fit(self, train: list[dict[str, Any]], valid: list[dict[str, Any]] | None,
            config: "TrainConfig | None" = None, *, out_dir: str | Path | None = None,
            progress: bool = True) -> "TrainResult":
        """Stage 1 (head selection) on ``train``, then stage 2 (offsets on the chosen heads)."""
        from ..selection import select
        from ..train import TrainConfig

        opts = {"batch_size": (config or TrainConfig()).batch_size, **self.stage1}
        self.selection = select("lofit", self.model, train, k=self.k, seed=self.seed, **opts)
        self.edit.set_head_mask(self.selection.mask.to(self.edit.mask.device))
        self.settings["selected_heads"] = self.selection.heads()
        self.settings["stage1_seconds"] = self.selection.record.get("seconds")
        return super().fit(train, valid, config, out_dir=out_dir, progress=progress)

    def summary(self) -> dict[str, Any]:
        """Trainable parameters and the heads stage 1 chose."""
        return {"editor": self.name, "trainable_params": self.n_trainable_parameters(), "k": self.k,
                "active_heads": mask_heads(self.mask)}

    @torch.no_grad()
    def _merge_into(self, target: Any) -> None:
        # z' = z + v on the chosen heads: b_O gains sum_h v_h W_O[h]
        from ..backends import backend_of
        from ..backends.hf import fold_head_edit

        _, shift = self.edit.scale_and_shift()
        for layer in self.edit.layers:
            if backend_of(target) in ("hf", "bridge"):  # the HF output projection's bias
                fold_head_edit(target, layer, torch.ones_like(shift[layer]), shift[layer])
                continue
            attn = target.blocks[layer].attn
            attn.b_O.add_(torch.einsum("hd,hdm->m", shift[layer].to(attn.W_O.dtype), attn.W_O))
