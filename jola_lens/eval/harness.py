"""A task's test questions as an lm-evaluation-harness task (a YAML and a JSONL, no hub).

:func:`write_lm_eval_task` writes the prompts exactly as jola_lens scores them (same template, same
option continuations), so ``lm_eval --model hf --model_args pretrained=EXPORTED --include_path DIR
--tasks NAME`` scores the same (prompt, option) pairs: its ``acc`` / ``acc_norm`` are jola_lens's
``likelihood_acc`` / ``likelihood_acc_norm`` (tested on the bundled ARC-Easy sample in
``tests/test_harness.py``). Multiple-choice tasks scored by option text (``target="choice_text"``, the
demo's) only: a label-target task scores label strings, which the harness's ``acc_norm`` would
normalise by another length.

Example:
    >>> import tempfile
    >>> from jola_lens.tasks.spec import TaskSpec, load_task_data
    >>> spec = TaskSpec(task="demo", test_size=5)
    >>> from transformers import AutoTokenizer
    >>> from jola_lens.loading import bundled_checkpoint_dir
    >>> tok = AutoTokenizer.from_pretrained(bundled_checkpoint_dir())
    >>> yaml_path = write_lm_eval_task(load_task_data(spec), spec, tok, tempfile.mkdtemp())
    >>> yaml_path.name
    'jola_demo.yaml'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["harness_rows", "write_lm_eval_task"]


def harness_rows(task_data: Any, spec: Any, tokenizer: Any) -> list[dict[str, Any]]:
    """One row per test question: ``id``, ``prompt`` (the formatted prompt), ``choices`` (the option
    continuations as scored) and ``gold`` (the right option's index)."""
    from ..tasks import choices_of, format_prompt, gold_choice_index, option_continuation

    if spec.target != "choice_text":
        raise ValueError(f"task {spec.task!r} is scored by label (target={spec.target!r}); the lm-eval task "
                         "is written for option-text scoring (--target choice_text)")
    rows = []
    for e in task_data.test:
        gold = gold_choice_index(e)
        if gold is None:
            raise ValueError(f"test example {e.get('id')!r} is not multiple choice with a known answer")
        rows.append({"id": e.get("id"), "prompt": format_prompt(e, tokenizer, spec.style),
                     "choices": [option_continuation(c, spec.style) for c in choices_of(e)], "gold": gold})
    return rows


def write_lm_eval_task(task_data: Any, spec: Any, tokenizer: Any, out_dir: str | Path,
                       name: str | None = None) -> Path:
    """Write ``{name}.yaml`` and ``{name}.jsonl`` (default name ``jola_{task}``) into ``out_dir``;
    returns the YAML's path (pass ``out_dir`` as lm-eval's ``--include_path``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or "jola_" + "".join(ch if ch.isalnum() else "_" for ch in Path(str(spec.task)).stem)
    rows = harness_rows(task_data, spec, tokenizer)
    data = out / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the prompt and the options are used verbatim: no delimiter, no few-shot, no chat template
    yaml = "\n".join([
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data.resolve()))}",
        "output_type: multiple_choice",
        "test_split: test",
        'doc_to_text: "{{prompt}}"',
        'doc_to_choice: "{{choices}}"',
        'doc_to_target: "{{gold}}"',
        'target_delimiter: ""',
        "num_fewshot: 0",
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "  - metric: acc_norm",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])
    path = out / f"{name}.yaml"
    path.write_text(yaml)
    return path
