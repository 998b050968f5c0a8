"""jola_lens: JoLA (Joint Localization and Activation Editing) on TransformerLens.

The workflow, one import::

    import jola_lens as jl
    model = jl.load_model()                          # bundled SmolLM2-135M-Instruct (HookedTransformer)
    task = jl.load_task("demo")                      # bundled ARC-Easy sample
    editor = jl.get_editor(model, "jola")            # list_editors(): jola lora bitfit red loreft lofit iti
    jl.train(editor, task)                           # recipe "demo" (default) or "paper"
    print(jl.evaluate(editor, task)["likelihood_acc"], editor.summary()["open_gates"])
    editor.save("runs/mine")
    editor = jl.load_editor("runs/mine", model)      # eval mode, model identity checked
    heads = jl.select("lofit", model, task, k=14)    # or jola, dsp, pass, smp, iti, random

``jl.evaluate(model_or_editor, task)`` runs :func:`jola_lens.workflow.evaluate`; the first release's
module of that name stays importable (``from jola_lens.evaluate import ...``, an alias of
:mod:`jola_lens.eval`): the module object itself is what ``jl.evaluate`` is, and calling it runs the
workflow's function.

Example:
    >>> import jola_lens as jl
    >>> jl.list_editors()
    ['jola', 'lora', 'bitfit', 'red', 'loreft', 'lofit', 'iti']
    >>> jl.list_recipes()
    ['demo', 'paper']
"""

__version__ = "0.1.0"

import importlib
import warnings
from typing import Any

# In a Jupyter kernel without ipywidgets, the first import of ``tqdm.auto`` (by huggingface_hub, when
# transformers loads) warns "IProgress not found" and then falls back to text progress bars, which is
# what every bar here uses there anyway: the warning tells a notebook reader nothing, so it is hidden.
# Only that message is filtered; with ipywidgets installed the bars are widgets.
warnings.filterwarnings("ignore", message=r"IProgress not found")

# Names are imported on first use (PEP 562), so ``import jola_lens`` and ``jola-lens --help`` do not
# pay for torch and TransformerLens; ``from jola_lens import X`` works as before.
_LAZY = {
    "JoLADataset": "compat", "make_data_collator": "compat",
    "JoLAConfig": "config",
    "Editor": "editors", "EditorConfig": "editors", "EditorLoadError": "editors", "get_editor": "editors",
    "list_editors": "editors", "load_editor": "editors", "register_editor": "editors",
    "HeadEdit": "edits",
    "HardConcrete": "gates",
    "ModelLoadError": "loading", "load_model": "loading",
    "JoLALoadError": "model", "JoLAModel": "model",
    "Recipe": "recipes", "get_recipe": "recipes", "list_recipes": "recipes",
    "SelectionResult": "selection", "list_selectors": "selection",
    "DataError": "tasks",
    "JoLATrainer": "train", "TrainConfig": "train", "Trainer": "train", "TrainResult": "train",
    "Task": "workflow", "load_task": "workflow", "select": "workflow",
}
# module paths that are also names: ``data`` (the first release's), ``evaluate`` and ``train`` (each module
# is callable and runs the workflow's function of its name: see evaluate.py and train.py)
_MODULES = ("data", "evaluate", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_MODULES))


__all__ = [
    "__version__",
    "DataError",
    "Editor",
    "EditorConfig",
    "EditorLoadError",
    "HardConcrete",
    "HeadEdit",
    "JoLAConfig",
    "JoLADataset",
    "JoLALoadError",
    "JoLAModel",
    "JoLATrainer",
    "ModelLoadError",
    "Recipe",
    "SelectionResult",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "get_editor",
    "get_recipe",
    "list_editors",
    "list_recipes",
    "list_selectors",
    "load_editor",
    "load_model",
    "load_task",
    "make_data_collator",
    "register_editor",
    "select",
    "train",
]
