"""Seeded, disjoint splits and task folders as splits (jola_lens.tasks.splits)."""

from __future__ import annotations

import pytest

from jola_lens.tasks import DataError, SeenExamples, load_examples, load_task, make_splits, sample_subset
from jola_lens.tasks.splits import _Seen

from .helpers import MMLU_Q, _keys, assert_disjoint, pool, write_jsonl


def test_make_splits_is_disjoint_and_drops_test_overlap():
    train = pool(60)
    test = pool(10, "s")
    train[5]["question"] = "  question  s 3 "  # same question as a test example (whitespace differs)
    train[7]["id"] = "s4"  # same id as a test example
    train[9]["question"] = train[8]["question"]  # a duplicate within train
    data = make_splits(train, test, train_size=20, valid_size=30, seed=0)
    assert data.sizes == {"train": 20, "valid": 30, "test": 10}
    assert_disjoint(data)
    kept = _keys(data.train + data.valid)[0]
    assert "t5" not in kept and "s4" not in kept


def test_make_splits_is_seeded():
    train = pool(100)
    a = make_splits(train, train_size=10, valid_size=10, seed=1)
    b = make_splits(train, train_size=10, valid_size=10, seed=1)
    c = make_splits(train, train_size=10, valid_size=10, seed=2)
    assert (a.train, a.valid) == (b.train, b.valid)
    assert _keys(a.train)[0] != _keys(c.train)[0]


def test_make_splits_with_given_validation_and_errors():
    data = make_splits(pool(30), pool(5, "s"), examples_valid=pool(40, "v") + pool(3), train_size=30,
                       valid_size=10, seed=0)
    assert data.sizes == {"train": 30, "valid": 10, "test": 5} and _keys(data.valid)[0] <= _keys(pool(40, "v"))[0]
    with pytest.raises(DataError, match="validation split is empty"):
        make_splits(pool(5), train_size=10, valid_size=5)
    assert make_splits(pool(5), train_size=10, valid_size=0).sizes == {"train": 5, "valid": 0, "test": 0}
    with pytest.raises(DataError, match="train split is empty"):
        make_splits(pool(3), pool(3), valid_size=0)  # every training example is also a test example
    with pytest.raises(DataError, match="test split is empty"):
        make_splits(pool(5), [])


def test_sample_subset_is_deterministic_and_ordered():
    items = pool(50)
    a = sample_subset(items, 10, seed=0)
    assert a == sample_subset(items, 10, seed=0) and a != sample_subset(items, 10, seed=1)
    assert [items.index(x) for x in a] == sorted(items.index(x) for x in a)
    assert sample_subset(items, None, 0) == items == sample_subset(items, 99, 0)


def test_seen_examples_match_by_id_or_normalised_question():
    seen = SeenExamples(pool(3))
    assert pool(3)[1] in seen
    assert {"id": "other", "question": "  question t\n2 "} in seen  # whitespace runs do not matter
    assert {"id": "t0", "question": "something else"} in seen
    assert {"id": "new", "question": "new question"} not in seen
    seen.add([{"id": "new", "question": "x"}])
    assert {"id": "new", "question": "y"} in seen
    assert _Seen is SeenExamples  # the old private name


def test_load_task_from_a_folder(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", pool(50))
    write_jsonl(tmp_path / "test.jsonl", pool(40, "s"))
    data = load_task(tmp_path, train_size=10, valid_size=5, test_size=7, seed=3)
    assert data.sizes == {"train": 10, "valid": 5, "test": 7}
    assert_disjoint(data)
    other = load_task(tmp_path, train_size=10, valid_size=5, test_size=7, seed=4)
    assert other.test == data.test and other.train != data.train  # the test subset ignores `seed`


def test_load_task_without_train_split_carves_disjoint_splits(tmp_path):
    folder = tmp_path / "mmlu_pro" / "toy"
    folder.mkdir(parents=True)
    test = [{"id": f"m{i}", "question": MMLU_Q.replace("1+1", f"{i}+1"), "choices": ["1", "2", "3"],
             "answer": "ABC"[i % 3], "references": [], "meta": {"category": "toy"}} for i in range(60)]
    test[59]["question"] = test[0]["question"]  # duplicated question inside test (as in MMLU-Pro health)
    write_jsonl(folder / "test.jsonl", test)
    val = dict(test[1], id="v1", question="val q?\n\n(A) x\n(B) y\n\nAnswer format: A/B", answer="A")
    write_jsonl(folder / "validation.jsonl", [val])  # too small to carve from: pooled with test
    data = load_task("mmlu_pro/toy", data_root=tmp_path, train_size=20, valid_size=10, seed=0)
    assert data.sizes["train"] == 20 and data.sizes["valid"] == 10 and data.labels == list("ABCDEFGHIJ")
    assert_disjoint(data)
    # 61 pooled examples, 30 carved; test keeps the rest of test.jsonl (one fewer if the duplicate was carved)
    assert 60 - 30 - 1 <= data.sizes["test"] <= 60 - 29
    assert data.name == "mmlu_pro/toy"


def test_load_task_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_task("no-such-task", data_root=tmp_path)
    write_jsonl(tmp_path / "train.jsonl", pool(5))
    with pytest.raises(DataError, match="no test split"):
        load_task(tmp_path)


def test_load_task_real_arc_easy(shared_data):
    data = load_task("ARC-Easy", data_root=shared_data, test_size=300)
    assert data.sizes == {"train": 200, "valid": 200, "test": 300}
    assert data.labels == [f"answer{k}" for k in range(1, 6)]
    assert_disjoint(data)
    full_test = load_examples(shared_data / "ARC-Easy" / "test.jsonl")
    assert data.test == sample_subset(full_test, 300, seed=0)
    assert load_task("arc_easy", data_root=shared_data, test_size=300).train == data.train
