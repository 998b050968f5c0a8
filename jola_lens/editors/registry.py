"""The editor registry: ``register_editor``, ``get_editor``, ``load_editor``, ``list_editors``.

Example:
    >>> from jola_lens.editors import list_editors
    >>> list_editors()
    ['jola', 'lora', 'bitfit', 'red', 'loreft', 'lofit', 'iti']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import Editor, EditorConfig, EditorLoadError

_REGISTRY: dict[str, tuple[type[Editor], type]] = {}


def register_editor(name: str, cls: type[Editor], config_cls: type) -> None:
    """Make ``cls`` (an :class:`Editor` subclass with settings ``config_cls``) available as ``name``.

    Example:
        >>> from jola_lens.editors import Editor, EditorConfig, register_editor
        >>> class Nothing(Editor):
        ...     name = "nothing"
        ...     def fwd_hooks(self):
        ...         return []
        >>> register_editor("nothing", Nothing, EditorConfig)
        >>> "nothing" in list_editors()
        True
        >>> _ = _REGISTRY.pop("nothing")
    """
    if not (isinstance(cls, type) and issubclass(cls, Editor)):
        raise TypeError(f"{cls!r} is not an Editor subclass")
    if name in _REGISTRY and _REGISTRY[name][0] is not cls:
        raise ValueError(f"an editor is already registered as {name!r} ({_REGISTRY[name][0].__name__})")
    _REGISTRY[name] = (cls, config_cls)


def list_editors() -> list[str]:
    """Registered editor names, in registration order (JoLA first)."""
    return list(_REGISTRY)


def editor_class(name: str) -> type[Editor]:
    """The class registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown editor {name!r}; choose from {list_editors()}")
    return _REGISTRY[name][0]


def config_class(name: str) -> type:
    """The settings dataclass of editor ``name``."""
    editor_class(name)
    return _REGISTRY[name][1]


def _name_of_config(config: Any) -> str:
    for name, (_, ccls) in _REGISTRY.items():
        if type(config) is ccls:
            return name
    raise TypeError(f"no editor is registered for a {type(config).__name__}; registered: {list_editors()}")


def get_editor(model: Any, config: str | EditorConfig = "jola", /, **options: Any) -> Editor:
    """Build an editor on ``model``: from a config object (``JoLAConfig(...)``, ``LoRAConfig(...)``)
    or a registered name plus keyword options.

    Example:
        >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
        >>> from jola_lens.editors import LoRAConfig
        >>> cfg = HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=16, d_head=4, n_heads=2, d_vocab=11,
        ...                               act_fn="gelu", normalization_type="RMS")
        >>> m = HookedTransformer(cfg)
        >>> a, b = get_editor(m, "lora", rank=2), get_editor(m, LoRAConfig(rank=2))
        >>> a.n_trainable_parameters() == b.n_trainable_parameters()
        True
        >>> get_editor(m, "nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown editor 'nope'; choose from ['jola', 'lora', 'bitfit', 'red', 'loreft', 'lofit', 'iti']
    """
    if isinstance(config, str):
        cls = editor_class(config)
        return cls(model, **options)
    name = _name_of_config(config)
    if options:
        raise TypeError(f"give either a config object or a name with options, not both: {sorted(options)}")
    return editor_class(name)(model, config)


def load_editor(directory: str | Path, model: Any, *, is_trainable: bool = False,
                check_model_name: bool = True) -> Editor:
    """Rebuild the editor saved in ``directory`` onto ``model``.

    Works for every editor and every format the library has written (see
    :mod:`jola_lens.editors.io`). The saved model identity is checked against ``model`` (shapes
    always, the model name unless ``check_model_name=False``). Like PEFT's
    ``from_pretrained(is_trainable=False)``, the editor comes back in eval mode (deterministic
    gates: two forward passes give identical logits); ``is_trainable=True`` returns it in training mode.
    """
    from .io import check_identity, read_run

    run = read_run(directory)
    check_identity(run.model, model, directory, check_model_name=check_model_name)
    try:
        cls, ccls = _REGISTRY[run.editor]
    except KeyError:
        raise EditorLoadError(f"{directory} holds a run of editor {run.editor!r}, which is not registered "
                              f"(known: {list_editors()})") from None
    cfg_dict = run.config
    if run.format == 0:  # the former baseline layout stored settings, not a config: keep the config's fields
        import dataclasses

        fields = {f.name for f in dataclasses.fields(ccls)}
        cfg_dict = {k: v for k, v in cfg_dict.items() if k in fields}
    try:
        config = ccls.from_dict(cfg_dict)
    except (TypeError, ValueError) as e:
        raise EditorLoadError(f"{directory}: the saved {run.editor} config is not valid here ({e})") from None
    ed = cls.from_saved(model, config, run)
    try:
        ed.load_edit_state(run.tensors)
    except ValueError as e:
        raise EditorLoadError(f"{directory}: {e}") from None
    ed.settings.update(run.meta.get("settings") or {})
    return ed.train(is_trainable)
