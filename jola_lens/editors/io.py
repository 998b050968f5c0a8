"""The saved-run format of every editor, read and written in one place.

A run folder holds two files:

* ``jola_config.json`` (the jola_lens run config, for every editor): ``format`` (2), ``editor``
  (the registry name), ``config`` (the editor's config dataclass as JSON), ``model`` (the identity a
  model must match to load the edits), ``versions`` (jola_lens, TransformerLens, torch), ``tensors``
  (name -> shape), ``sha256`` of the tensor file, ``summary`` and ``extra`` (the trainer's settings).
  JoLA runs also keep ``jola_config`` (the same as ``config``) for readers of format 1.
* ``edits.safetensors``: :meth:`Editor.edit_state` (no pickle anywhere).

Older folders still load: format 1 JoLA runs (``jola_config.json`` without ``editor``) and the
baselines' former layout (``baseline.json`` + ``baseline.safetensors``).

Example:
    >>> import tempfile, torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> from jola_lens.editors import get_editor
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=32, d_head=4, n_heads=4, d_mlp=32,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = get_editor(HookedTransformer(cfg), "lora", rank=2).save(d)
    ...     run = read_run(d)
    >>> run.editor, run.format, sorted(run.tensors)[:2]
    ('lora', 2, ['A_q', 'A_v'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .base import EditorLoadError, model_identity

if TYPE_CHECKING:  # pragma: no cover
    from .base import Editor

FORMAT = 2
CONFIG_FILE = "jola_config.json"
EDITS_FILE = "edits.safetensors"
LEGACY_BASELINE_CONFIG = "baseline.json"
LEGACY_BASELINE_FILE = "baseline.safetensors"


@dataclass
class SavedRun:
    """A run folder's contents, whatever format wrote it.

    Attributes:
        editor: registry name (``"jola"``, ``"lora"``...).
        config: the editor's config as a dict (for a legacy baseline run: its recorded settings
            restricted to the config's fields).
        model: the identity of the model the edits were trained on.
        tensors: the edit tensors (:meth:`Editor.edit_state` names).
        meta: the whole JSON as written.
        format: 2 for this format, 1 for the first release's JoLA runs, 0 for the former baseline layout.
        path: the folder.
    """

    editor: str
    config: dict[str, Any]
    model: dict[str, Any]
    tensors: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    path: Path | None = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import transformer_lens

    from .. import __version__

    return {"jola_lens": __version__, "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
            "torch": torch.__version__}


def write_run(editor: "Editor", directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``editor`` into ``directory`` (created if needed). The tensor file is written to a
    temporary name and moved into place, then the config (with the tensor file's hash) is written
    the same way, so a reader never sees a half-written pair."""
    from safetensors.torch import save_file

    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise NotADirectoryError(f"{d} exists and is not a folder")
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in editor.edit_state().items()}
    tmp = d / (EDITS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(d / EDITS_FILE)
    versions = _versions()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "library": "jola_lens",
        "editor": editor.name,
        "config": editor.config_dict(),
        "model": model_identity(editor.model),
        # how to load it again (jola-lens eval/merge without --model); absent for a model built by hand
        "model_source": getattr(editor.model, "jola_lens_source", None),
        "versions": versions,
        # the first release's keys, kept so that its readers still find them
        "library_version": versions["jola_lens"],
        "transformer_lens_version": versions["transformer_lens"],
        "torch_version": versions["torch"],
        "tensors": {k: list(v.shape) for k, v in tensors.items()},
        "sha256": _sha256(d / EDITS_FILE),
        "trainable_params": editor.n_trainable_parameters(),
        "settings": editor.settings,
    }
    meta.update(editor.run_metadata())
    if extra:
        meta["extra"] = extra
    tmp_cfg = d / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(meta, indent=2, default=str))
    tmp_cfg.replace(d / CONFIG_FILE)
    return d


def read_meta(directory: str | Path) -> tuple[dict[str, Any], Path, int]:
    """The run's JSON, the tensor file's path and the format, without reading any tensor."""
    d = Path(directory)
    cfg, legacy_cfg = d / CONFIG_FILE, d / LEGACY_BASELINE_CONFIG
    if cfg.is_file():
        path, tensors = cfg, d / EDITS_FILE
    elif legacy_cfg.is_file():
        path, tensors = legacy_cfg, d / LEGACY_BASELINE_FILE
    else:
        where = f"{d} not found" if not d.exists() else f"{d} is not a folder" if not d.is_dir() else f"{cfg} not found"
        raise EditorLoadError(f"{d} is not a saved JoLA run ({where}; a run folder of any editor holds "
                              f"{CONFIG_FILE} and {EDITS_FILE})")
    if not tensors.is_file():
        raise EditorLoadError(f"{tensors} not found: a saved run holds {path.name} and {tensors.name}")
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise TypeError("the top level is not a mapping")
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
        raise EditorLoadError(f"{path} is not a valid JoLA config ({type(e).__name__}: {e})") from None
    if path == legacy_cfg:
        fmt = 0
    else:
        fmt = int(meta.get("format", 1)) if "editor" in meta else 1
    return meta, tensors, fmt


def read_run(directory: str | Path, *, verify: bool = True) -> SavedRun:
    """Read a run folder of any format (see the module docstring); errors are :class:`EditorLoadError`.

    ``verify``: check the tensor file against the hash the config recorded (format 2).
    """
    from safetensors.torch import load_file

    d = Path(directory)
    meta, tensor_path, fmt = read_meta(d)
    try:
        if fmt == 0:
            editor, config, model = str(meta["baseline"]), dict(meta.get("settings") or {}), dict(meta["model"])
        elif fmt == 1:
            editor, config, model = "jola", dict(meta["jola_config"]), dict(meta["model"])
        else:
            editor, config, model = str(meta["editor"]), dict(meta["config"]), dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise EditorLoadError(f"{d / CONFIG_FILE} is not a valid JoLA config ({type(e).__name__}: {e})") from None
    if verify and meta.get("sha256") and _sha256(tensor_path) != meta["sha256"]:
        raise EditorLoadError(f"{tensor_path} is corrupted: its contents do not match the hash recorded in "
                              f"{CONFIG_FILE} (the file was changed or damaged after saving)")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as e:  # safetensors raises its own error types
        raise EditorLoadError(f"{tensor_path} is corrupted or not a safetensors file ({e})") from None
    return SavedRun(editor=editor, config=config, model=model, tensors=tensors, meta=meta, format=fmt, path=d)


def check_identity(saved: dict[str, Any], model: Any, where: str | Path, *, check_model_name: bool = True) -> None:
    """Raise :class:`EditorLoadError` naming every field where ``model`` differs from ``saved``.

    The shapes must always agree. Beyond them the model is recognised by its weights (the
    fingerprint of :func:`~jola_lens.editors.base.weight_fingerprint`), not by the name or path it
    was loaded under; runs saved before fingerprints fall back to the model name.
    ``check_model_name=False`` (``--allow-other-model``) skips that check for a user who knows the
    models are interchangeable.
    """
    from .base import SHAPE_KEYS, same_weights

    here = model_identity(model)
    diffs = [f"{k}: saved {saved.get(k)!r}, this model {here[k]!r}" for k in SHAPE_KEYS if saved.get(k) != here[k]]
    if not diffs and check_model_name:
        if saved.get("weights"):
            if not same_weights(saved["weights"], here["weights"], (str(saved.get("dtype", "")), here["dtype"])):
                diffs.append(f"the weights differ (saved on {saved.get('model_name')!r}, this model is "
                             f"{here['model_name']!r}); pass --allow-other-model (check_model_name=False) if you "
                             "know the edits fit it")
        elif saved.get("model_name") != here["model_name"]:
            diffs.append(f"model_name: saved {saved.get('model_name')!r}, this model {here['model_name']!r}")
    if diffs:
        raise EditorLoadError(f"the edits in {where} were trained on another model; " + "; ".join(diffs))


def is_run_folder(directory: str | Path) -> bool:
    """Whether ``directory`` looks like a saved run of any format."""
    d = Path(directory)
    return (d / CONFIG_FILE).is_file() or (d / LEGACY_BASELINE_CONFIG).is_file()
