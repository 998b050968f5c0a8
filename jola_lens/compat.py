"""The original ``jola`` package's interface, kept for code written against it.

``JoLADataset`` (a dataset class returning split dicts) and ``make_data_collator`` (the
collator factory with the original keywords) are the original names; the library's own
task-data functions live in :mod:`jola_lens.tasks`.

Example:
    >>> from jola_lens.compat import JoLADataset, make_data_collator
    >>> splits = JoLADataset(from_list=True, train_list=["1+1?", "2"]).data_from_list()
    >>> [e["answer"] for e in splits["train"]], type(make_data_collator(pad_token_id=0)).__name__
    (['2'], 'DataCollator')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .tasks.batching import DataCollator
from .tasks.io import _available_splits, _split_file, load_examples
from .tasks.schema import DataError, Example
from .tasks.splits import sample_subset
from .tasks.tokenize import _encode_many

__all__ = ["JoLADataset", "make_data_collator"]


def make_data_collator(
    tokenizer: Any = None,
    pad_token_id: int | None = None,
    response_template: str | Sequence[int] | None = None,
    mlm: bool = False,
    **kwargs: Any,
) -> DataCollator:
    """A :class:`DataCollator` (the original ``jola.make_data_collator`` name and keywords).

    Args:
        tokenizer: gives the pad id (``pad_token_id``, else ``eos_token_id``) and encodes
            ``response_template``.
        pad_token_id: the pad id to write (its value never affects masks or labels); default 0
            without a tokenizer.
        response_template: only for rows without ``labels``: tokens up to and including
            its last occurrence get label -100 (JoLA used ``"### Response:\\n"``).
        mlm: must be False (JoLA trains causal LMs).
        kwargs: ``pad_to_multiple_of`` is honoured; other keywords of the original
            (e.g. ``instruction_template``) are accepted and ignored.

    Example:
        >>> collate = make_data_collator(pad_token_id=2)
        >>> b = collate([{"input_ids": [5, 6, 2], "labels": [-100, 6, 2]}, {"input_ids": [7], "labels": [7]}])
        >>> b["input_ids"].tolist(), b["attention_mask"].tolist(), b["labels"].tolist()
        ([[5, 6, 2], [7, 2, 2]], [[1, 1, 1], [1, 0, 0]], [[-100, 6, 2], [7, -100, -100]])
    """
    if mlm:
        raise DataError("mlm=True is not supported: JoLA trains causal language models")
    if pad_token_id is None and tokenizer is not None:
        pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = getattr(tokenizer, "eos_token_id", None)
    template_ids: list[int] | None = None
    if response_template is not None:
        if isinstance(response_template, str):
            if tokenizer is None:
                raise DataError("a string response_template needs a tokenizer to encode it")
            template_ids = _encode_many(tokenizer, [response_template])[0]
        else:
            template_ids = [int(t) for t in response_template]
    return DataCollator(
        pad_token_id=int(pad_token_id or 0),
        response_template_ids=template_ids,
        pad_to_multiple_of=kwargs.get("pad_to_multiple_of"),
    )


# ---- the original package's dataset class --------------------------------------------------------


class JoLADataset:
    """Compatibility with the original ``jola.JoLADataset`` (normalised example lists, not HF Datasets).

    ``train_size`` examples of train (and of valid) are sampled with ``random.Random(seed)``
    (the original used the unseeded global ``random``); ``train_size`` 0 or ``None`` keeps all.

    Example:
        >>> ds = JoLADataset(from_list=True, train_list=["2+2?", "4", "3+3?", "6"], train_size=1)
        >>> [e["answer"] for e in ds.data_from_list()["train"]]
        ['4']
    """

    def __init__(
        self,
        from_list: bool = False,
        data_path: str | os.PathLike | None = None,
        train_size: int | None = 200,
        train_list: Sequence[Any] | None = None,
        *,
        seed: int = 42,
    ) -> None:
        self.from_list = from_list
        self.data_path = data_path
        self.train_size = train_size
        self.train_list = train_list
        self.seed = seed

    def _sample(self, examples: list[Example]) -> list[Example]:
        return sample_subset(examples, self.train_size or None, self.seed)

    def data_from_file(self) -> dict[str, list[Example]]:
        """``{"train", "valid", "test"}`` from ``data_path`` (only the splits that exist; train required)."""
        if self.data_path is None or not Path(self.data_path).is_dir():
            raise DataError(f"data_path {self.data_path!r} is not a folder")
        folder = Path(self.data_path)
        out: dict[str, list[Example]] = {}
        for key in ("train", "valid", "test"):
            f = _split_file(folder, key)
            if f is not None:
                out[key] = load_examples(f)
        if "train" not in out:
            have = ", ".join(_available_splits(folder)) or "none"
            raise DataError(f"{folder}: no train split (expected train.json or train.jsonl; found: {have})")
        out["train"] = self._sample(out["train"])
        if "valid" in out:
            out["valid"] = self._sample(out["valid"])
        return out

    def data_from_list(self) -> dict[str, list[Example]]:
        """``{"train": ...}`` from ``train_list``: a list of dicts or a flat ``[prompt, answer, ...]`` list."""
        if self.train_list is None:
            raise DataError("JoLADataset.data_from_list needs train_list")
        return {"train": self._sample(load_examples(list(self.train_list)))}


# ---- the original JoLA model, config and trainer names ------------------------------------------
# ``JoLAModel.jola_from_pretrained``, ``JoLAModel.unfreeze_jola_params``,
# ``JoLAConfig.get_jola_config`` and ``JoLATrainer(model, train_dataset=..., args=...)`` are the
# original package's interface. They are defined here and attached to the library's classes when
# jola_lens is imported, so that everything kept for the original names lives in this one module.

_ORIGINAL_DEFAULTS: dict[str, Any] = {
    "model_config": {
        "pretrained_model_name_or_path": "smollm2",
        "device": "cpu",
        "applied_module": "attention",
        "applied_layers": None,
        "base_model_name": "SmolLM2-135M-Instruct",
    },
    "training_config": {
        "learning_rate": 5e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 50,
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "num_train_epochs": 20,
        "seed": 42,
        "output_dir": "./output",
        "report_to": "none",
    },
    "data_config": {"train_size": 200, "task_name": "common_reason", "data_path": None},
    "jola_config": {"gate_lambda": 4e-5, "gate_scheduler": "expon"},
}


def get_jola_config(cls: Any = None, default: bool = True, config_path: str | Path | None = None) -> dict[str, Any]:
    """The original package's nested config dict (``model_config``, ``training_config``,
    ``data_config``, ``jola_config``); also ``JoLAConfig.get_jola_config(...)``. ``default=True``
    returns our defaults, which follow the original ``config.yaml`` except for the model (the bundled
    SmolLM2's cached checkpoint directory), the device (cpu) and the data (the bundled ARC-Easy sample).
    """
    import json

    if default:
        cfg = json.loads(json.dumps(_ORIGINAL_DEFAULTS))
        from .loading import bundled_checkpoint_dir
        from .tasks import DEMO_DATA

        # A real checkpoint directory, so that AutoTokenizer.from_pretrained(**model_config)
        # works as in the original quick-start.
        cfg["model_config"]["pretrained_model_name_or_path"] = str(bundled_checkpoint_dir(verbose=False))
        cfg["data_config"]["data_path"] = str(DEMO_DATA)
        return cfg
    if config_path is None:
        raise ValueError("get_jola_config(default=False) needs config_path")
    import yaml

    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return cfg


def jola_from_pretrained(
    cls: Any,
    pretrained_model_name_or_path: str = "smollm2",
    cache_dir: str | None = None,
    applied_module: str = "attention",
    applied_layers: list[int] | None = None,
    torch_dtype: Any = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """The original package's constructor (``JoLAModel.jola_from_pretrained``): load a model and
    attach JoLA edits. ``applied_module``: ``"attention"`` (the paper), ``"mlp"``, or ``"both"``."""
    import dataclasses

    import torch

    from .config import JoLAConfig
    from .loading import load_model

    sites = {"attention": ("attn",), "attn": ("attn",), "mlp": ("mlp",), "both": ("attn", "mlp")}
    if applied_module not in sites:
        raise ValueError(f"applied_module must be one of {sorted(sites)}, got {applied_module!r}")
    fields = {f.name for f in dataclasses.fields(JoLAConfig)}
    edit_kw = {k: v for k, v in kwargs.items() if k in fields}  # others (device_map, ...) are ignored
    model = load_model(pretrained_model_name_or_path, device=device, dtype=torch_dtype or torch.float32)
    return cls(model, JoLAConfig(layers=applied_layers, sites=sites[applied_module], **edit_kw))


def unfreeze_jola_params(self: Any) -> list[Any]:
    """Original-package name (``jola.unfreeze_jola_params()``): base frozen, edits trainable (already
    so here); returns the edit parameters."""
    for p in self.model.parameters():
        p.requires_grad_(False)
    for p in self.edits.parameters():
        p.requires_grad_(True)
    return self.edit_parameters()


def trainer_args_from_original(jola: Any, train_dataset: Any, eval_dataset: Any, tokenizer: Any, args: Any,
                               gate_scheduler: str | None, max_seq_length: int, callbacks: Any) -> tuple:
    """Map ``JoLATrainer(model, train_dataset=, eval_dataset=, tokenizer=, args=TrainingArguments,
    callbacks=[EarlyStoppingCallback], gate_scheduler=)`` onto the library's trainer arguments
    ``(train, valid, config, out_dir, callbacks)``.

    Datasets are lists (or HF datasets) of examples from :class:`JoLADataset`; they are tokenised
    with JoLA's Alpaca prompt and the bare label as target, as the original.
    """
    import math

    from .tasks import load_examples, tokenize_examples
    from .train import TrainConfig

    tok = tokenizer if tokenizer is not None else jola.model.tokenizer

    def prep(ds: Any) -> Any:
        if ds is None:
            return None
        rows = list(ds)
        if rows and "input_ids" in rows[0] and "labels" in rows[0]:
            return rows
        return tokenize_examples(load_examples(rows), tok, style="alpaca", target="label",
                                 max_length=max_seq_length)

    get = (lambda k, d: getattr(args, k, d)) if not isinstance(args, dict) else (lambda k, d: args.get(k, d))
    max_steps = get("max_steps", -1)
    sched = get("lr_scheduler_type", "cosine")
    sched = getattr(sched, "value", sched)
    cfg = TrainConfig(
        lr=float(get("learning_rate", 5e-3)),
        batch_size=int(get("per_device_train_batch_size", 8)),
        eval_batch_size=int(get("per_device_eval_batch_size", 8)),
        epochs=max(1, int(math.ceil(float(get("num_train_epochs", 20))))),
        max_steps=None if max_steps is None or max_steps < 0 else int(max_steps),
        warmup_steps=int(get("warmup_steps", 50)),
        lr_schedule=str(sched) if str(sched) in ("cosine", "linear", "constant") else "cosine",
        weight_decay=float(get("weight_decay", 0.0)),
        max_grad_norm=float(get("max_grad_norm", 1.0)),
        seed=int(get("seed", 42)),
        penalty="jola_code" if gate_scheduler else "none",
        gate_schedule=gate_scheduler or "expon",
        gate_lr=None,  # the original trains gates with the edits' learning rate
        gate_lambda=None,  # and takes lambda from its schedule's constant
    )
    ours = []
    for cb in callbacks or []:
        if hasattr(cb, "early_stopping_patience"):
            cfg.patience = int(cb.early_stopping_patience)
        elif callable(cb):
            ours.append(cb)
    out_dir = get("output_dir", None)
    return prep(train_dataset), prep(eval_dataset), cfg, out_dir, ours


# ``JoLAConfig.get_jola_config``, ``JoLAModel.jola_from_pretrained`` and ``jola.unfreeze_jola_params()``
# are thin methods of those classes that call the functions above (so no import order is needed).


__all__ += ["get_jola_config", "jola_from_pretrained", "trainer_args_from_original", "unfreeze_jola_params"]
