"""Every method as one kind of object: an :class:`Editor` over a frozen HookedTransformer.

=========  ==========================================================================  ===================
name       what is trained                                                             SmolLM2-135M params
=========  ==========================================================================  ===================
jola       gated additive + multiplicative edits of every head's ``hook_z`` (JoLA)      35,100
lora       rank-8 LoRA on W_Q and W_V                                                   460,800
bitfit     offsets of every bias (b_Q, b_K, b_V, b_O, b_in, b_out)                      109,440
red        scale + bias on each layer's MLP output (RED)                                34,560
loreft     rank-8 LoReFT on every block output, first 7 + last 7 prompt tokens         276,720
lofit      LoFiT: stage-1 head selection (L1 scalings), stage-2 offsets v               K * 64
iti        ITI steering: probe-selected heads, mass-mean shift (nothing trained)        0
=========  ==========================================================================  ===================

``get_editor(model, name_or_config, **options)`` builds one, ``editor.fit(train, valid, TrainConfig)``
trains it with the one :class:`~jola_lens.train.Trainer`, ``editor.save(dir)`` writes the one run
format and ``load_editor(dir, model)`` reads any of them back (eval mode, model identity checked).
The base model's weights are never changed (edits are hooks; its parameters never require grad).

Example (a tiny random model):
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.editors import get_editor, list_editors
    >>> from jola_lens.train import TrainConfig
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_mlp=32,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> data = [{"input_ids": [i, 2, 3, 4], "labels": [-100, -100, 3, 4]} for i in range(8)]
    >>> red = get_editor(HookedTransformer(cfg), "red")
    >>> result = red.fit(data, data[:2], TrainConfig(epochs=1, warmup_steps=0), progress=False)
    >>> result.steps, list_editors()
    (1, ['jola', 'lora', 'bitfit', 'red', 'loreft', 'lofit', 'iti'])
"""

from __future__ import annotations

from ..config import JoLAConfig
from .base import EditBaseline, Editor, EditorConfig, EditorLoadError, PromptPositions, attached_hooks, model_identity
from .bitfit import BitFit, BitFitConfig
from .iti import ITIConfig, ITISteering
from .jola import JoLAModel
from .lofit import LoFiT, LoFiTConfig
from .lora import LoRA, LoRAConfig
from .loreft import LoReFT, LoReFTConfig
from .red import RED, REDConfig
from .registry import config_class, editor_class, get_editor, list_editors, load_editor, register_editor

#: JoLA's editor class under its method name (``JoLAModel`` is the first release's name)
JoLA = JoLAModel

register_editor("jola", JoLAModel, JoLAConfig)
register_editor("lora", LoRA, LoRAConfig)
register_editor("bitfit", BitFit, BitFitConfig)
register_editor("red", RED, REDConfig)
register_editor("loreft", LoReFT, LoReFTConfig)
register_editor("lofit", LoFiT, LoFiTConfig)
register_editor("iti", ITISteering, ITIConfig)

__all__ = [
    "RED", "BitFit", "BitFitConfig", "EditBaseline", "Editor", "EditorConfig", "EditorLoadError", "ITIConfig",
    "ITISteering", "JoLA", "JoLAConfig", "JoLAModel", "LoFiT", "LoFiTConfig", "LoRA", "LoRAConfig", "LoReFT",
    "LoReFTConfig", "PromptPositions", "REDConfig", "attached_hooks", "config_class", "editor_class",
    "get_editor", "list_editors", "load_editor", "model_identity", "register_editor",
]
