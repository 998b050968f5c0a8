"""The original package's dataset class (jola_lens.compat.JoLADataset) and the old ``jola_lens.data`` imports."""

from __future__ import annotations

import pytest

from jola_lens.compat import JoLADataset
from jola_lens.tasks import DataError

from .helpers import write_jsonl


def test_jola_dataset_from_file(tmp_path):
    for split, n in {"train": 30, "valid": 20, "test": 5}.items():
        rows = [{"instruction": f"{split} {i}\n\nAnswer format: true/false", "answer": "true"} for i in range(n)]
        write_jsonl(tmp_path / f"{split}.json", rows)
    out = JoLADataset(data_path=tmp_path, train_size=10).data_from_file()
    assert {k: len(v) for k, v in out.items()} == {"train": 10, "valid": 10, "test": 5}
    assert out == JoLADataset(data_path=tmp_path, train_size=10).data_from_file()
    (tmp_path / "valid.json").unlink()
    out = JoLADataset(data_path=tmp_path, train_size=0).data_from_file()
    assert set(out) == {"train", "test"} and len(out["train"]) == 30


def test_jola_dataset_from_list_both_shapes():
    flat = ["2+2?", "4", "3+3?", "6", "4+4?", "8"]
    dicts = [{"instruction": flat[i], "answer": flat[i + 1]} for i in range(0, 6, 2)]
    a = JoLADataset(from_list=True, train_list=flat, train_size=200).data_from_list()
    b = JoLADataset(from_list=True, train_list=dicts, train_size=200).data_from_list()
    assert list(a) == ["train"]
    assert [(e["question"], e["answer"]) for e in a["train"]] == [(e["question"], e["answer"]) for e in b["train"]]
    assert len(JoLADataset(from_list=True, train_list=flat, train_size=2).data_from_list()["train"]) == 2
    with pytest.raises(DataError, match="odd length"):
        JoLADataset(from_list=True, train_list=flat[:3]).data_from_list()


#: every name the first release's ``jola_lens/data.py`` defined
OLD_DATA_NAMES = [
    "ALPACA_TEMPLATE", "_answer_format", "_as_ids", "_as_text", "_assemble", "_available_splits", "_bos",
    "_check_style", "choices_of", "CLOZE_TEMPLATE", "_content_id", "DataCollator", "DataError",
    "_default_data_roots", "_encode_many", "end_of_turn", "Example", "_find_last", "format_prompt",
    "_FORMAT_RE", "format_target", "_from_hub", "_from_list", "_from_records", "gold_choice_index",
    "IGNORE_INDEX", "_INDEXED_RE", "_is_multiple_choice", "JoLADataset", "_label_kind", "label_set",
    "length_grouped_batches", "_LETTERS", "load_examples", "load_task", "_looks_like_path",
    "make_data_collator", "make_splits", "_normalise", "_OPTIONS_START_RE", "parse_choices", "PROMPT_STYLES",
    "QA_TEMPLATE", "question_stem", "_read_json_array", "_read_json_lines", "_read_records", "_read_text",
    "_resolve_task_dir", "RESPONSE_TEMPLATE", "sample_subset", "_SCHEMA_KEYS", "_Seen", "_SENTINEL",
    "_sequential_options", "_SPLIT_ALIASES", "_split_file", "_SPLIT_FILES", "_STEM_END_RE", "_STEM_PREFIX_RE",
    "_str_list", "_target_text", "TARGETS", "_TASK_ALIASES", "_task_for_labels", "_task_key", "TASK_LABELS",
    "TaskData", "_text_key", "tokenize_examples", "tokenize_pair", "TokenizedDataset", "validate_examples",
    "_where",
]


def test_old_data_module_reexports_every_name():
    import jola_lens.data as old
    from jola_lens import compat, tasks

    missing = [n for n in OLD_DATA_NAMES if not hasattr(old, n)]
    assert not missing
    assert old.JoLADataset is compat.JoLADataset is JoLADataset
    assert old.make_data_collator is compat.make_data_collator
    assert old.load_examples is tasks.load_examples and old.TaskData is tasks.TaskData
    assert old._Seen is tasks.SeenExamples and old._resolve_task_dir is tasks.resolve_task_dir
    assert set(old.__all__) <= set(OLD_DATA_NAMES)
    assert set(compat.__all__) == {"JoLADataset", "make_data_collator", "get_jola_config", "jola_from_pretrained",
                                   "trainer_args_from_original", "unfreeze_jola_params"}
