"""The example schema and validation (jola_lens.tasks.schema): fields and answers, errors naming file and line."""

from __future__ import annotations

import pytest

from jola_lens.tasks import DataError, load_examples, validate_examples

from .helpers import ours, write_jsonl


def test_missing_field_names_file_and_line(tmp_path):
    row = ours(1)
    del row["answer"]
    f = write_jsonl(tmp_path / "train.jsonl", [ours(0), row])
    with pytest.raises(DataError, match=r"train\.jsonl, line 2: missing field 'answer'") as err:
        load_examples(f)
    assert str(f) in str(err.value)


def test_answer_outside_label_set_names_line(tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", [ours(0), ours(1, "answer1"), ours(2, "the whale")])
    with pytest.raises(DataError, match=r"train\.jsonl, line 3: answer 'the whale' is not in the label set") as err:
        load_examples(f)
    assert str(f) in str(err.value)


def test_answer_past_the_choices_names_line(tmp_path):
    rows = [ours(0, "answer1"), ours(1, "answer2"), ours(2, "answer2", choices=["shark", "whale", "trout", "eel"]),
            ours(3, "answer4")]
    f = write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match="line 4: answer 'answer4' names none of the 3 choices"):
        load_examples(f)


def test_task_pins_the_label_set(tmp_path):
    f = write_jsonl(tmp_path / "t.jsonl", [ours(0, "answer1"), ours(1, "answer2")])
    with pytest.raises(DataError, match="line 1: answer 'answer1' is not in the label set \\(true, false\\)"):
        load_examples(f, task="boolq")


def test_validate_examples_without_lines_names_example_number():
    exs = [ours(0, "answer1"), ours(1, "B")]
    with pytest.raises(DataError, match="<mine>, example 2: answer 'B'"):
        validate_examples(exs, "<mine>")
