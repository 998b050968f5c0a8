"""Data in the forms people have (issue 24, item 1): pairs, prompt/completion, CSV, field maps, integer
answers, a DatasetDict, one file carved into splits, a verbatim prompt."""

import json
import warnings

import pytest

from jola_lens.tasks import DataError, DataNote, format_prompt, load_examples, load_task


def test_a_list_of_pairs_and_the_common_field_names():
    pairs = load_examples([("What is 2+2?", "4"), ("Sky?", "blue")])
    assert [(e["question"], e["answer"]) for e in pairs] == [("What is 2+2?", "4"), ("Sky?", "blue")]
    shapes = load_examples([{"prompt": "p", "completion": "c"}, {"input": "i", "output": "o"},
                            {"prompt": "q", "answer": "a"}])
    assert [(e["question"], e["answer"]) for e in shapes] == [("p", "c"), ("i", "o"), ("q", "a")]
    with pytest.raises(DataError, match=r"example 1: a pair must be \(prompt, answer\), got 3"):
        load_examples([("a", "b", "c")])
    with pytest.raises(DataError, match="has 'prompt' but no answer field"):
        load_examples([{"prompt": "p"}])


def test_a_field_map_and_integer_answers():
    ex = load_examples([{"text": "Which?", "opts": ["a", "b", "c"], "y": 2}],
                       fields={"question": "text", "choices": "opts", "answer": "y"})
    assert ex[0]["question"] == "Which?" and ex[0]["choices"] == ["a", "b", "c"] and ex[0]["answer"] == "answer3"
    with pytest.raises(DataError, match=r"example 1: no field 'label' \(given as the answer field; fields here: "):
        load_examples([{"text": "q"}], fields={"question": "text", "answer": "label"})
    with pytest.raises(DataError, match="answer index 3 is out of range for 2 choices"):
        load_examples([{"question": "q", "choices": ["a", "b"], "answer": 3}])


def test_csv_and_tsv_files(tmp_path):
    (tmp_path / "d.csv").write_text('question,choices,answer\nSky colour?,blue|green,1\n'
                                    'Grass?,"[""blue"", ""green""]",green\n')
    ex = load_examples(tmp_path / "d.csv")
    assert [(e["choices"], e["answer"]) for e in ex] == [(["blue", "green"], "answer2"),
                                                         (["blue", "green"], "answer2")]
    (tmp_path / "d.tsv").write_text("q\ta\nWhat is up?\tthe sky\n")
    assert load_examples(tmp_path / "d.tsv", fields={"question": "q", "answer": "a"})[0]["answer"] == "the sky"
    (tmp_path / "bad.csv").write_text("question,answer\nq1,a1\nq2,a2,extra\n")
    with pytest.raises(DataError, match=r"bad.csv, line 3: more cells than the header"):
        load_examples(tmp_path / "bad.csv")
    (tmp_path / "nolabel.csv").write_text("question,answer\nq1,\n")
    with pytest.raises(DataError, match=r"nolabel.csv, line 2: missing field 'answer'"):
        load_examples(tmp_path / "nolabel.csv")


def test_a_dataset_dict():
    datasets = pytest.importorskip("datasets")
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"question": "a?", "answer": "b"}]),
                               "test": datasets.Dataset.from_list([{"question": "c?", "answer": "d"}])})
    assert load_examples(dd, "test")[0]["question"] == "c?"
    with pytest.raises(DataError, match="choose a split"):
        load_examples(dd)


def _rows(n):
    return [{"question": f"question {i}", "choices": ["x", "y"], "answer": i % 2} for i in range(n)]


def test_one_file_is_carved_into_disjoint_splits_with_a_note(tmp_path):
    f = tmp_path / "all.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in _rows(50)) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_task(f, train_size=30, valid_size=5, test_size=None, seed=1)
    assert data.sizes == {"train": 30, "valid": 5, "test": 10}  # 20% test by default
    qs = [{e["question"] for e in split} for split in (data.train, data.valid, data.test)]
    assert not (qs[0] & qs[1] or qs[0] & qs[2] or qs[1] & qs[2])
    notes = [str(w.message) for w in caught if issubclass(w.category, DataNote)]
    assert any("one file, carved into test 10" in n and "5 examples left unused" in n for n in notes)
    again = load_task(f, train_size=30, valid_size=5, test_size=None, seed=1)
    assert [e["id"] for e in again.train] == [e["id"] for e in data.train]


def test_a_too_small_set_says_what_it_has_and_what_to_set(tmp_path):
    f = tmp_path / "small.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in _rows(16)) + "\n")
    with pytest.raises(DataError, match=r"16 examples cannot give a test split of 300 .*\(--test-size\) to 3, "
                                        r"train_size \(--train-size\) to 10 and valid_size \(--valid-size\) to 3"):
        load_task(f, test_size=300)
    with pytest.raises(DataError, match=r"validation split is empty: the data has 13 training examples and "
                                        r"train_size 200 leaves none for valid_size 200; set train_size "
                                        r"\(--train-size\) to 10"):
        load_task(f, test_size=3)


def test_verbatim_prompts_are_used_as_written():
    ex = {"question": "The capital of France is", "answer": "Paris", "choices": []}
    assert format_prompt(ex, style="verbatim") == "The capital of France is"


def test_sizes_not_given_shrink_to_fit_small_data_and_given_ones_do_not(tmp_path):
    import jola_lens as jl
    from jola_lens.tasks.spec import TaskSpec, fit_task_data

    rows = _rows(40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = jl.load_task(rows)
    assert task.data.sizes == {"train": 26, "valid": 6, "test": 8}
    assert (task.spec.train_size, task.spec.valid_size, task.spec.test_size) == (26, 6, 8)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataNote)]
    assert any("do not fit this data; using train_size 26, valid_size 6, test_size 8" in n for n in notes), notes
    # the splits are disjoint and use every row
    ids = [e["id"] for split in (task.data.train, task.data.valid, task.data.test) for e in split]
    assert len(ids) == len(set(ids)) == 40
    # a size given is kept: too large is an error naming what fits
    with pytest.raises(DataError, match=r"40 examples cannot give a test split of 100"):
        jl.load_task(rows, test_size=100)
    with pytest.raises(DataError, match=r"validation split is empty"):
        jl.load_task(rows, test_size=8, train_size=200, valid_size=200)
    # data big enough for the defaults is untouched: the same splits as the strict loader
    f = tmp_path / "big.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in _rows(800)) + "\n")
    spec, td = fit_task_data(TaskSpec(task=str(f)))
    assert spec == TaskSpec(task=str(f)) and td.sizes == {"train": 200, "valid": 200, "test": 300}
    assert [e["id"] for e in td.train] == [e["id"] for e in load_task(f, test_size=300).train]
