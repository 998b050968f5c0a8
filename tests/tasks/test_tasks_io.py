"""Reading task data (jola_lens.tasks.io): every source format, file/line errors, task folders."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import jola_lens
from jola_lens.tasks import (
    DEMO_DATA,
    DataError,
    choices_of,
    gold_choice_index,
    label_set,
    load_examples,
    parse_choices,
    resolve_task_dir,
)
from jola_lens.tasks.io import _default_data_roots, _resolve_task_dir

from .helpers import ARC_Q, ours, write_jsonl

# ---- loading each source format -----------------------------------------------------------------


def test_load_our_jsonl_schema(tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", [ours(0), ours(1, "answer3")])
    exs = load_examples(f)
    assert [e["id"] for e in exs] == ["ex-0", "ex-1"]
    assert exs[1]["answer"] == "answer3" and exs[1]["choices"] == ["shark", "whale", "trout"]
    assert set(exs[0]) == {"id", "question", "choices", "answer", "references", "meta"}


def test_load_jola_json_lines_folder_with_split(tmp_path):
    for split, answers in {"train": ["true", "false", "true"], "valid": ["false"], "test": ["true", "true"]}.items():
        rows = [{"instruction": f"{split} q{i}\n\nAnswer format: true/false", "answer": a}
                for i, a in enumerate(answers)]
        write_jsonl(tmp_path / f"{split}.json", rows)
    train = load_examples(tmp_path, "train")
    assert [e["answer"] for e in train] == ["true", "false", "true"]
    assert train[0]["question"] == "train q0\n\nAnswer format: true/false"
    assert train[0]["choices"] == [] and train[0]["references"] == ["true"]
    assert len(load_examples(tmp_path, "valid")) == len(load_examples(tmp_path, "validation")) == 1
    assert len(load_examples(tmp_path, "test")) == 2
    ids = {e["id"] for s in ("train", "valid", "test") for e in load_examples(tmp_path, s)}
    assert len(ids) == 6  # generated ids are unique across the split files


def test_load_llm_adapters_json_array(tmp_path):
    rows = [
        {"instruction": ARC_Q, "input": "", "output": "the correct answer is answer2", "answer": "answer2"},
        {"instruction": ARC_Q.replace("mammal", "fish"), "input": "", "output": "the correct answer is answer3",
         "answer": "answer3"},
    ]
    f = tmp_path / "data.json"
    f.write_text(json.dumps(rows, indent=2))
    exs = load_examples(f)
    assert exs[0]["question"] == ARC_Q and [e["answer"] for e in exs] == ["answer2", "answer3"]
    assert exs[0]["meta"]["output"] == "the correct answer is answer2"
    assert choices_of(exs[0]) == ["shark", "whale", "trout"] and label_set(exs) == ["answer1", "answer2", "answer3"]
    gen = tmp_path / "gen.json"  # Alpaca-style generation data: input appended, output as the answer
    gen.write_text(json.dumps([{"instruction": "Summarise.", "input": "Some text.", "output": "Text."}]))
    (ex,) = load_examples(gen)
    assert (ex["question"], ex["answer"], ex["references"]) == ("Summarise.\n\nSome text.", "Text.", ["Text."])


def test_load_list_of_dicts_and_flat_list():
    dicts = load_examples([{"instruction": "2+2?", "answer": "4"}, {"question": "3+3?", "answer": "6"}])
    flat = load_examples(["2+2?", "4", "3+3?", "6"])
    assert [(e["question"], e["answer"]) for e in dicts] == [(e["question"], e["answer"]) for e in flat]
    assert len({e["id"] for e in flat}) == 2


def test_flat_list_of_odd_length_is_an_error():
    with pytest.raises(DataError, match="odd length 3"):
        load_examples(["q1", "a1", "q2"])


def test_load_folder_of_jsonl_splits(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [ours(0)])
    write_jsonl(tmp_path / "validation.jsonl", [ours(1)])
    write_jsonl(tmp_path / "test.jsonl", [ours(2), ours(3)])
    assert [e["id"] for e in load_examples(tmp_path, "validation")] == ["ex-1"]
    assert len(load_examples(tmp_path, "test")) == 2


def test_hub_name_offline_gives_one_line_data_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(DataError) as err:
        load_examples("no-such-owner/no-such-dataset-jola", "train")
    msg = str(err.value)
    assert "\n" not in msg and "no-such-owner/no-such-dataset-jola" in msg and "offline" in msg
    assert time.time() - t0 < 30


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_examples(tmp_path / "missing.jsonl")


def test_real_arc_easy_files_load_and_parse(shared_data):
    train = load_examples(shared_data / "ARC-Easy" / "train.jsonl")
    assert len(train) == 2251
    assert label_set(train) == [f"answer{k}" for k in range(1, 6)]
    for ex in train:  # the options written in the question are exactly the stored choices
        assert parse_choices(ex["question"]) == [c.strip() for c in ex["choices"]]
        assert gold_choice_index(ex) == int(ex["answer"][len("answer"):]) - 1


# ---- bad files: DataError naming the file and 1-based line --------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "bad.jsonl", [ours(0), ours(1), ours(2)], {3: '{"id": "x", "question": '})
    with pytest.raises(DataError) as err:
        load_examples(f)
    assert str(f) in str(err.value) and "line 3" in str(err.value) and "invalid JSON" in str(err.value)


def test_blank_lines_keep_line_numbers(tmp_path):
    f = tmp_path / "gaps.jsonl"
    f.write_text(json.dumps(ours(0)) + "\n\n\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match="line 4: missing field 'answer'"):
        load_examples(f)


def test_non_object_line(tmp_path):
    f = write_jsonl(tmp_path / "x.jsonl", [ours(0), [1, 2]])
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        load_examples(f)


def test_json_array_errors_name_the_line(tmp_path):
    rows = [{"instruction": "q1", "answer": "a"}, {"instruction": "q2"}]
    f = tmp_path / "arr.json"
    f.write_text(json.dumps(rows, indent=2))  # the second object starts on line 6
    with pytest.raises(DataError, match=r"arr\.json, line 6: missing field 'answer'"):
        load_examples(f)
    f.write_text('[\n  {"instruction": "q1", "answer": "a"},\n  {"instruction": "q2", "answer": }\n]')
    with pytest.raises(DataError, match=r"arr\.json, line 3: invalid JSON"):
        load_examples(f)


@pytest.mark.parametrize("content", ["", "\n\n", "[]"])
def test_empty_split_is_an_error(tmp_path, content):
    f = tmp_path / "test.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match="no examples") as err:
        load_examples(f)
    assert str(f) in str(err.value)


def test_folder_without_the_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [ours(0)])
    with pytest.raises(DataError, match="no file for split 'test'.*splits found: train"):
        load_examples(tmp_path, "test")


# ---- task folders and the bundled sample --------------------------------------------------------


def test_resolve_task_dir_by_name_alias_and_path(tmp_path, monkeypatch):
    (tmp_path / "ARC-Easy").mkdir()
    (tmp_path / "mmlu_pro" / "biology").mkdir(parents=True)
    assert resolve_task_dir("ARC-Easy", tmp_path) == tmp_path / "ARC-Easy"
    assert resolve_task_dir("arc_easy", tmp_path) == resolve_task_dir("arce", tmp_path) == tmp_path / "ARC-Easy"
    assert resolve_task_dir("mmlu_pro/biology", tmp_path) == tmp_path / "mmlu_pro" / "biology"
    assert resolve_task_dir(tmp_path / "ARC-Easy") == tmp_path / "ARC-Easy"  # a folder is itself
    monkeypatch.setenv("JOLA_LENS_DATA", str(tmp_path))
    assert resolve_task_dir("arc-easy") == tmp_path / "ARC-Easy"  # the default roots start with $JOLA_LENS_DATA
    with pytest.raises(DataError, match="not found"):
        resolve_task_dir("no-such-task", tmp_path)
    assert _resolve_task_dir is resolve_task_dir  # the old private name


def test_default_data_roots_end_beside_the_repository(monkeypatch):
    monkeypatch.delenv("JOLA_LENS_DATA", raising=False)
    repo = Path(jola_lens.__file__).resolve().parents[1]
    assert _default_data_roots() == [Path.cwd() / "data", repo.parent / "shared" / "data"]


def test_bundled_demo_sample_is_in_the_package_assets():
    assert DEMO_DATA.parent == Path(jola_lens.__file__).resolve().parent / "assets"
    sizes = {s: len(load_examples(DEMO_DATA / f"{s}.jsonl")) for s in ("train", "valid", "test")}
    assert sizes == {"train": 200, "valid": 200, "test": 300}
    assert (DEMO_DATA / "README.md").is_file()
