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

from . import (
    data,  # noqa: F401  (the first release's module path, now an alias of jola_lens.tasks)
    evaluate,  # the old module path; calling it is jola_lens.workflow.evaluate (see evaluate.py)
)
from .compat import JoLADataset, make_data_collator
from .config import JoLAConfig
from .editors import Editor, EditorConfig, EditorLoadError, get_editor, list_editors, load_editor, register_editor
from .edits import HeadEdit
from .gates import HardConcrete
from .loading import ModelLoadError, load_model
from .model import JoLALoadError, JoLAModel
from .recipes import Recipe, get_recipe, list_recipes
from .selection import SelectionResult, list_selectors
from .tasks import DataError
from .train import JoLATrainer, TrainConfig, Trainer, TrainResult
from .workflow import Task, load_task, select, train

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
