"""The workflow in a few calls: load a model, load a task, get an editor, train, evaluate, select.

``import jola_lens as jl`` gives these functions at the top level::

    model = jl.load_model()                      # the bundled SmolLM2-135M-Instruct
    task = jl.load_task("demo")                  # the bundled ARC-Easy sample: train / valid / test
    editor = jl.get_editor(model, "jola")        # or "lora", "bitfit", "red", "loreft", "lofit", "iti"
    jl.train(editor, task)                       # the demo recipe; recipe="paper" for the paper's settings
    print(jl.evaluate(editor, task)["likelihood_acc"], editor.summary()["open_gates"])

Everything is the library's own code path: :func:`train` is ``editor.fit`` on the task's rows
tokenised with the task's prompt format, :func:`evaluate` is
:func:`jola_lens.eval.driver.evaluate_task`.

Example (a tiny random model and a made-up task; the same calls run on the bundled model):
    >>> import torch
    >>> from transformer_lens import HookedTransformer, HookedTransformerConfig
    >>> import jola_lens as jl
    >>> cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=64, d_head=4, n_heads=4, d_mlp=32,
    ...                               d_vocab=50, act_fn="gelu", normalization_type="RMS")
    >>> model = HookedTransformer(cfg)
    >>> task = jl.Task.from_rows([[i, 2, 3, 4] for i in range(8)], [[-100, -100, 3, 4]] * 8)
    >>> editor = jl.get_editor(model, "jola")
    >>> result = jl.train(editor, task, epochs=1, progress=False)
    >>> result.steps
    1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .editors.base import Editor
    from .experiment import TaskSpec
    from .selection import SelectionResult
    from .tasks import TaskData
    from .train import TrainResult

EditorName = Literal["jola", "lora", "bitfit", "red", "loreft", "lofit", "iti"]
SelectorName = Literal["jola", "lofit", "dsp", "pass", "smp", "iti", "random", "all"]


@dataclass
class Task:
    """A task's splits and how to present them: ``spec`` (prompt style, target, sizes, seeds) and
    ``data`` (train / valid / test examples). Tokenised rows are made on demand for a model.

    ``rows`` holds already tokenised training rows instead (``Task.from_rows``), for tests and
    for users who tokenise themselves.
    """

    spec: "TaskSpec | None" = None
    data: "TaskData | None" = None
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def from_rows(cls, input_ids: list[list[int]], labels: list[list[int]],
                  valid: tuple[list[list[int]], list[list[int]]] | None = None) -> "Task":
        """A task of pre-tokenised rows (labels are -100 except on the answer tokens); it can be
        trained on, not evaluated (there are no test questions)."""
        train = [{"input_ids": list(i), "labels": list(lab)} for i, lab in zip(input_ids, labels)]
        val = [] if valid is None else [{"input_ids": list(i), "labels": list(lab)} for i, lab in zip(*valid)]
        return cls(rows={"train": train, "valid": val})

    @property
    def train(self) -> list[dict[str, Any]]:
        return self.data.train if self.data is not None else []

    @property
    def valid(self) -> list[dict[str, Any]]:
        return self.data.valid if self.data is not None else []

    @property
    def test(self) -> list[dict[str, Any]]:
        return self.data.test if self.data is not None else []

    def tokenized(self, model: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Training and validation rows tokenised for ``model`` with the task's prompt format."""
        if self.rows:
            return self.rows.get("train", []), self.rows.get("valid", [])
        from .eval.target import base_model, prepends_bos
        from .experiment import tokenize_splits

        return tokenize_splits(base_model(model).tokenizer, self.data, self.spec, prepends_bos(model))


def load_task(task: Any = "demo", **spec: Any) -> Task:
    """Load a task: ``"demo"`` (the bundled ARC-Easy sample), a task folder name under the data root
    (``"ARC-Easy"``, ``"boolq"``...), a folder path, one data file (``.jsonl``, ``.json``, ``.csv``,
    ``.tsv``), or data in memory (a list of dicts or of (prompt, answer) pairs, a ``datasets.Dataset``);
    one file or in-memory data is carved into disjoint test / train / validation splits by the seeds.
    Sizes you do not give shrink to fit data smaller than the defaults (train 200, validation 200, test
    300), said in one note; sizes you give are kept, or refused with what the data allows.
    ``spec`` sets any :class:`~jola_lens.experiment.TaskSpec` field (``style``, ``target``,
    ``train_size``, ``test_size``, ``seed``, ``data_root``, ``fields``...).

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> pairs = [(f"Is {i} even? Answer format: true/false", str(i % 2 == 0).lower()) for i in range(30)]
        >>> load_task(pairs, train_size=16, valid_size=4, test_size=6).data.sizes
        {'train': 16, 'valid': 4, 'test': 6}
    """
    from .tasks import load_examples
    from .tasks.spec import SIZE_FIELDS, TaskSpec, fit_sizes, fit_task_data

    unset = [k for k in SIZE_FIELDS if k not in spec]  # sizes not given shrink to fit small data, with a note
    if isinstance(task, (str, Path)):
        s, data = fit_task_data(TaskSpec.from_dict({"task": str(task), **spec}), unset)
        return Task(spec=s, data=data)
    from .tasks.splits import carve_splits

    s = TaskSpec.from_dict({"task": "<data>", **spec})
    examples = load_examples(task, fields=s.fields)
    carve = lambda sp: carve_splits(examples, "<data>", train_size=sp.train_size,  # noqa: E731
                                    valid_size=sp.valid_size, test_size=sp.test_size, seed=sp.seed,
                                    test_seed=sp.test_seed, where="<data>")
    s, data = fit_sizes(carve, s, unset)
    return Task(spec=s, data=data)


def train(editor: "Editor", task: Task, *, recipe: str = "demo", out_dir: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> "TrainResult":
    """Train ``editor`` on ``task`` with ``recipe``'s settings (``overrides`` on top: ``epochs=``,
    ``lr=``, ``seed=``...); the edits are saved into ``out_dir`` when given."""
    from .recipes import get_recipe

    tc = get_recipe(recipe).train_config(**overrides)
    tr, va = task.tokenized(editor.model)
    return editor.fit(tr, va, tc, out_dir=out_dir, progress=progress)


def evaluate(model_or_editor: Any, task: Task, *, generation: bool = False, progress: bool = True,
             return_rows: bool = False) -> dict[str, Any]:
    """Score a model or an editor on ``task``'s test questions (``likelihood_acc``,
    ``likelihood_acc_norm``, with ``generation`` also ``generation_acc``; BLEU / ROUGE-L for
    generation tasks)."""
    from .experiment import evaluate_task

    if task.data is None or not task.test:
        raise ValueError("this task has no test questions to evaluate on (load it with jl.load_task)")
    return evaluate_task(model_or_editor, task.data, task.spec, generation=generation, progress=progress,
                         return_rows=return_rows)


def select(method: str, model: Any, task: Task, *, k: int | None = None, seed: int = 0,
           **options: Any) -> "SelectionResult":
    """Which ``k`` heads to edit, by selector ``method`` (see :func:`jola_lens.selection.select`),
    from ``task``'s training rows (ITI gets the contrastive rows it needs)."""
    from .eval.target import prepends_bos
    from .selection import contrastive_rows
    from .selection import select as _select

    if method == "iti" and task.data is not None:
        s = task.spec
        rows = contrastive_rows(task.train, model.tokenizer, style=s.style, target=s.target,
                                max_length=s.max_length, prepend_bos=prepends_bos(model))
    else:
        rows, _ = task.tokenized(model)
    return _select(method, model, rows, k=k, seed=seed, **options)
