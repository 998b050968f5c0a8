"""ITI-style inference-time steering (Li et al., NeurIPS 2023): nothing is trained.

``fit`` runs the ITI probes (:func:`jola_lens.selection.select` with ``"iti"``: per-head logistic
probes on the last answer token of correct vs wrong answers), keeps the top ``k`` heads by probe
accuracy, and adds ``alpha * sigma * theta`` to each one's ``hook_z``, where ``theta`` is the unit
mass-mean shift (mean over correct answers minus mean over wrong ones) and ``sigma`` the standard
deviation of the activations along it. The shift is applied from the last prompt token onwards
(prompt-only passes: the last prompt token; passes on top of a KV cache: every position), which
is where ITI's code edits during cached generation. ``alpha`` is ITI's 15 unless
``alphas`` is given, in which case each value is scored on the validation rows and the best kept
(the default grid includes 0, so steering can never score worse than the base model there).
Rows with ``wrong_answers`` (:func:`jola_lens.selection.iti.contrastive_rows`) are scored as the
test set is: the option whose summed log-probability is highest is the prediction, and the alpha
with the highest validation accuracy wins (ties: the lower validation answer loss). Without wrong
answers (generation tasks) the lowest validation answer loss wins. Accuracy, not loss, is the
criterion where it can be: the gold answer's loss also falls when a shift makes every option
likelier at once (BoolQ's one-token " true" and " false" start near probability 1e-4), which
does not tell the options apart; the test scores only their ranking.

RePE (Zou et al. 2023) reads its direction from the residual stream instead of the heads; it
is not implemented.

Example:
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_vocab=50,
    ...                               act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4 + i % 3], "labels": [-100, -100, -100, 4 + i % 3]} for i in range(12)]
    >>> iti = ITISteering(HookedTransformer(cfg), k=2, alphas=[0.0, 5.0])
    >>> _ = iti.fit(data, data[:4], progress=False)
    >>> int(iti.mask.sum()), iti.alpha in (0.0, 5.0), iti.n_trainable_parameters()
    (2, True, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ..train import TrainConfig, Trainer, TrainResult
from .base import Editor, EditorConfig, mask_heads, resolve_config


@dataclass
class ITIConfig(EditorConfig):
    """ITI settings: ``k`` heads steered (``None``: 48 of every 1024 heads, ITI's share), the
    steering strength ``alpha``, and ``alphas`` searched on the validation set (``None``: keep ``alpha``)."""

    k: int | None = None
    alpha: float = 15.0
    alphas: list[float] | None = dataclass_field(default_factory=lambda: [0.0, 1.0, 2.5, 5.0, 10.0, 15.0])
    seed: int = 0


class ITISteering(Editor):
    backends = ("hooked", "bridge", "hf")
    name = "iti"
    display_name = "ITI steering"
    config_cls = ITIConfig
    needs_prompt_pass = True

    def __init__(self, model: Any, config: ITIConfig | None = None, **options: Any) -> None:
        config = resolve_config(ITIConfig, config, options)
        super().__init__(model, config)
        k, alpha, alphas, seed = config.k, config.alpha, config.alphas, config.seed
        c = model.cfg
        self.k = max(1, round(48 / 1024 * c.n_layers * c.n_heads)) if k is None else int(k)  # ITI: 48 of 1024
        self.alpha = float(alpha)
        self.alphas = None if alphas is None else [float(a) for a in alphas]
        self.seed = seed
        self.register_buffer("shift", torch.zeros(c.n_layers, c.n_heads, c.d_head))  # sigma * theta, masked
        self.register_buffer("mask", torch.zeros(c.n_layers, c.n_heads, dtype=torch.bool))
        self.selection: Any = None
        self.settings = {"k": self.k, "alpha": self.alpha, "alphas": self.alphas}

    def n_trainable_parameters(self) -> int:
        return 0

    def config_dict(self) -> dict[str, Any]:
        """The config with the steering strength the validation search chose (what the saved edit uses)."""
        return {**self.config.to_dict(), "alpha": self.alpha}

    def summary(self) -> dict[str, Any]:
        """The steered heads and the strength."""
        return {"editor": self.name, "trainable_params": 0, "k": self.k, "alpha": self.alpha,
                "active_heads": mask_heads(self.mask)}

    def fwd_hooks(self) -> list[tuple[str, Callable[..., Tensor]]]:
        def make(layer: int) -> Callable[..., Tensor]:
            def hook(z: Tensor, hook: Any = None) -> Tensor:
                where = self.positions.from_last_prompt_token(z.shape[0], z.shape[1], z.device)
                add = self.alpha * self.shift[layer].to(z.dtype)
                return z + where[:, :, None, None].to(z.dtype) * add[None, None]

            return hook

        layers = sorted({int(x) for x in torch.nonzero(self.mask)[:, 0].tolist()})
        return [(f"blocks.{layer}.attn.hook_z", make(layer)) for layer in layers]

    def option_accuracy(self, rows: Sequence[dict[str, Any]], batch_size: int = 8) -> float:
        """Share of ``rows`` (with ``wrong_answers``) whose gold target has the highest summed
        log-probability among the options under the current steering: the test set's scoring."""
        from ..eval.scoring import _argmax, score_token_continuations
        from ..selection.iti import _answer_span

        prompts, conts = [], []
        for r in rows:
            ids = list(r["input_ids"])
            first, last = _answer_span(r)
            prompts.append(ids[:first])
            conts.append([ids[first:last + 1]] + [list(w) for w in r["wrong_answers"]])
        scores = score_token_continuations(self, prompts, conts, batch_size=batch_size)
        return sum(_argmax(s) == 0 for s in scores) / max(len(rows), 1)

    def fit(self, train: list[dict[str, Any]], valid: list[dict[str, Any]] | None,
            config: TrainConfig | None = None, *, out_dir: str | Path | None = None,
            progress: bool = True) -> TrainResult:
        """Probe, choose heads and directions; pick ``alpha`` on ``valid`` when ``alphas`` is set."""
        import time

        from ..selection import select

        start = time.time()
        sel = select("iti", self.model, train, k=self.k, seed=self.seed)
        self.selection = sel
        d = sel.record["directions"]
        unit = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        with torch.no_grad():
            self.mask.copy_(sel.mask)
            self.shift.copy_(unit * sel.record["projection_std"][..., None] * sel.mask[..., None])
        history = []
        if self.alphas and valid:
            trainer = Trainer(self, train, valid, config or TrainConfig(penalty="none"), progress=False)
            by_accuracy = all(r.get("wrong_answers") for r in valid)
            for a in self.alphas:
                self.alpha = a
                entry = {"alpha": a, "valid_loss": trainer.validation_loss()}
                if by_accuracy:
                    entry["valid_accuracy"] = self.option_accuracy(valid, batch_size=trainer.config.batch_size)
                history.append(entry)
            self.observe_batch(None)
            inf = float("inf")
            self.alpha = min(history, key=lambda h: (-h.get("valid_accuracy", 0.0),
                                                     inf if h["valid_loss"] is None else h["valid_loss"]))["alpha"]
        self.settings.update(alpha=self.alpha, selected_heads=sel.heads(), alpha_search=history,
                             alpha_criterion=("valid_accuracy" if history and "valid_accuracy" in history[0]
                                              else "valid_loss" if history else None))
        result = TrainResult(steps=0, epochs_run=0.0, best_epoch=None,
                             best_valid_loss=min((h["valid_loss"] for h in history), default=None),
                             history=history, stopped="completed", seconds=time.time() - start)
        if out_dir is not None:
            self.save(out_dir)
        return result
