"""Data loading, label sets, prompts, answer-only tokenisation, collation and splits (jola_lens.data)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from jola_lens.data import (
    ALPACA_TEMPLATE,
    IGNORE_INDEX,
    DataError,
    JoLADataset,
    TokenizedDataset,
    choices_of,
    end_of_turn,
    format_prompt,
    format_target,
    gold_choice_index,
    label_set,
    length_grouped_batches,
    load_examples,
    load_task,
    make_data_collator,
    make_splits,
    parse_choices,
    question_stem,
    sample_subset,
    tokenize_examples,
    tokenize_pair,
    validate_examples,
)

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
ARC_EASY = SHARED_DATA / "ARC-Easy"

ARC_Q = (
    "Please choose the correct answer to the question: Which is a mammal?\n\n"
    "Answer1: shark Answer2: whale Answer3: trout\n\nAnswer format: answer1/answer2/answer3"
)
BOOLQ_Q = (
    "Please answer the following question with true or false, question: is the sky blue?\n\n"
    "Answer format: true/false"
)
MMLU_Q = "Please choose the correct answer to the question: 1+1?\n\n(A) 1\n(B) 2\n(C) 3\n\nAnswer format: A/B/C"


def ours(i: int, answer: str = "answer2", question: str | None = None, **kw) -> dict:
    row = {"id": f"ex-{i}", "question": question or ARC_Q.replace("mammal", f"mammal {i}"),
           "choices": ["shark", "whale", "trout"], "answer": answer, "references": [], "meta": {}}
    row.update(kw)
    return row


def write_jsonl(path: Path, rows: list, raw_lines: dict[int, str] | None = None) -> Path:
    """Write ``rows`` as JSON lines; ``raw_lines`` replaces given 1-based lines verbatim."""
    lines = [json.dumps(r) for r in rows]
    for lineno, text in (raw_lines or {}).items():
        lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


class CharTokenizer:
    """A stand-in HF tokenizer: one id per character (ord), BOS 1, EOS/pad 3 spelled '|'."""

    bos_token_id = 1
    eos_token = "|"
    eos_token_id = 3
    pad_token_id = 3

    def __call__(self, texts, add_special_tokens=False):
        single = isinstance(texts, str)
        ids = [[3 if c == "|" else ord(c) for c in t] for t in ([texts] if single else texts)]
        return {"input_ids": ids[0] if single else ids}

    def decode(self, ids):
        return "".join("|" if i == 3 else chr(i) for i in ids)


# ---- loading each source format -------------------------------------------------------------------


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


def test_real_arc_easy_files_load_and_parse():
    train = load_examples(ARC_EASY / "train.jsonl")
    assert len(train) == 2251
    assert label_set(train) == [f"answer{k}" for k in range(1, 6)]
    for ex in train:  # the options written in the question are exactly the stored choices
        assert parse_choices(ex["question"]) == [c.strip() for c in ex["choices"]]
        assert gold_choice_index(ex) == int(ex["answer"][len("answer"):]) - 1


# ---- bad inputs: DataError naming the file and 1-based line -------------------------------------


def test_malformed_json_line_names_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "bad.jsonl", [ours(0), ours(1), ours(2)], {3: '{"id": "x", "question": '})
    with pytest.raises(DataError) as err:
        load_examples(f)
    assert str(f) in str(err.value) and "line 3" in str(err.value) and "invalid JSON" in str(err.value)


def test_missing_field_names_file_and_line(tmp_path):
    row = ours(1)
    del row["answer"]
    f = write_jsonl(tmp_path / "train.jsonl", [ours(0), row])
    with pytest.raises(DataError, match=r"train\.jsonl, line 2: missing field 'answer'") as err:
        load_examples(f)
    assert str(f) in str(err.value)


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


def test_folder_without_the_split(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [ours(0)])
    with pytest.raises(DataError, match="no file for split 'test'.*splits found: train"):
        load_examples(tmp_path, "test")


def test_validate_examples_without_lines_names_example_number():
    exs = [ours(0, "answer1"), ours(1, "B")]
    with pytest.raises(DataError, match="<mine>, example 2: answer 'B'"):
        validate_examples(exs, "<mine>")


# ---- label sets, stems, gold indices --------------------------------------------------------------


def test_label_sets():
    assert label_set([ours(0)]) == ["answer1", "answer2", "answer3"]
    boolq = [{"question": BOOLQ_Q, "choices": ["true", "false"], "answer": a} for a in ("true", "false")]
    assert label_set(boolq) == ["true", "false"]
    mmlu = [{"question": MMLU_Q, "choices": ["1", "2", "3"], "answer": "B", "meta": {"category": "math"}}]
    assert label_set(mmlu) == list("ABCDEFGHIJ")
    assert label_set([{"question": "Describe a cat.", "choices": [], "answer": "Furry."}]) is None
    assert label_set([ours(0)], task="ARC-Easy") == [f"answer{k}" for k in range(1, 6)]
    assert label_set([ours(0)], task="mmlu_pro") == list("ABCDEFGHIJ")


def test_label_set_of_jola_format_comes_from_the_question():
    exs = load_examples([{"instruction": ARC_Q, "answer": "answer2"}, {"instruction": BOOLQ_Q, "answer": "answer1"}])
    assert exs[0]["choices"] == []
    assert label_set(exs) == ["answer1", "answer2", "answer3"]


def test_question_stem_and_gold_index():
    assert question_stem({"question": ARC_Q}) == "Which is a mammal?"
    assert question_stem({"question": BOOLQ_Q}) == "is the sky blue?"
    assert question_stem({"question": MMLU_Q}) == "1+1?"
    assert question_stem({"question": " Write a haiku. "}) == "Write a haiku."
    assert gold_choice_index({"question": ARC_Q, "choices": [], "answer": "answer2"}) == 1
    assert gold_choice_index({"question": BOOLQ_Q, "choices": ["true", "false"], "answer": "false"}) == 1
    assert gold_choice_index({"question": MMLU_Q, "choices": ["1", "2", "3"], "answer": "C"}) == 2
    assert gold_choice_index({"question": MMLU_Q, "choices": ["1", "2", "3"], "answer": "D"}) is None
    assert gold_choice_index({"question": "Describe.", "choices": [], "answer": "answer1"}) is None


def test_real_arc_easy_stems_have_no_prompt_scaffolding():
    for ex in load_examples(ARC_EASY / "test.jsonl")[:200]:
        stem = question_stem(ex)
        assert stem and "Please choose" not in stem and "Answer1:" not in stem and "Answer format" not in stem
        assert stem in ex["question"]


# ---- prompts and targets ------------------------------------------------------------------------


def test_alpaca_prompt_is_jolas_exact_template():
    ex = ours(0)
    expected = (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n ### Instruction:\n" + ex["question"] + "\n\n### Response:\n"
    )
    assert format_prompt(ex, None, "alpaca") == expected == ALPACA_TEMPLATE.format(instruction=ex["question"])
    assert format_target(ex, None, "alpaca") == "answer2"  # no EOS, as the original code
    assert format_target(ex, CharTokenizer(), "alpaca", add_eos=True) == "answer2|"


def test_cloze_prompt_and_targets():
    ex = ours(0)
    assert format_prompt(ex, None, "cloze") == "Question: Which is a mammal 0?\nAnswer:"
    assert format_target(ex, None, "cloze", "choice_text") == " whale"
    assert format_target(ex, None, "cloze", "label") == " answer2"
    assert format_target(ex, None, "alpaca", "choice_text") == "whale"
    gen = {"question": "Describe a cat.", "choices": [], "answer": "Furry."}
    assert format_target(gen, None, "cloze", "choice_text") == " Furry."


class ToyChat:
    eos_token = "</s>"
    chat_template = "toy"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}<eot>\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


def test_chat_style_with_a_toy_template():
    ex = ours(0)
    assert end_of_turn(ToyChat()) == "<eot>"
    assert format_prompt(ex, ToyChat(), "chat") == f"<user>{ex['question']}<eot>\n<assistant>"
    assert format_target(ex, ToyChat(), "chat") == "answer2<eot>"
    assert end_of_turn(CharTokenizer()) == "|"  # no chat template: falls back to the EOS


def test_bad_style_target_and_missing_template():
    with pytest.raises(DataError, match="unknown prompt style"):
        format_prompt(ours(0), None, "nonsense")
    with pytest.raises(DataError, match="unknown target"):
        format_target(ours(0), None, "alpaca", "letter")
    with pytest.raises(DataError, match="chat template"):
        format_prompt(ours(0), CharTokenizer(), "chat")


# ---- tokenisation (stand-in tokenizer) ----------------------------------------------------------


def test_tokenize_pair_masks_the_prompt():
    out = tokenize_pair("Q: x\n", "yes", CharTokenizer())
    assert out["input_ids"] == [ord(c) for c in "Q: x\nyes"]
    assert out["labels"] == [IGNORE_INDEX] * 5 + [ord(c) for c in "yes"]
    bos = tokenize_pair("Q", "a", CharTokenizer(), prepend_bos=True)
    assert bos == {"input_ids": [1, ord("Q"), ord("a")], "labels": [IGNORE_INDEX, IGNORE_INDEX, ord("a")]}


def test_tokenize_pair_truncates_the_prompt_from_the_left_only():
    out = tokenize_pair("abcdefgh", "XYZ", CharTokenizer(), max_length=6, prepend_bos=True)
    assert CharTokenizer().decode(out["input_ids"][1:]) == "ghXYZ" and out["input_ids"][0] == 1
    assert out["labels"][-3:] == [ord(c) for c in "XYZ"] and out["labels"][:3] == [IGNORE_INDEX] * 3
    assert tokenize_pair("abc", "XYZ", CharTokenizer(), max_length=3)["input_ids"] == [ord(c) for c in "XYZ"]
    with pytest.raises(DataError, match="target alone is 4 tokens"):
        tokenize_pair("abc", "WXYZ", CharTokenizer(), max_length=3)
    with pytest.raises(DataError, match=r"\+1 BOS"):
        tokenize_pair("abc", "XYZ", CharTokenizer(), max_length=3, prepend_bos=True)


def test_tokenize_examples_and_dataset():
    exs = [ours(0), ours(1, "answer3")]
    rows = tokenize_examples(exs, CharTokenizer(), style="alpaca", target="choice_text")
    assert [r["id"] for r in rows] == ["ex-0", "ex-1"]
    for r, text in zip(rows, ("whale", "trout")):
        assert r["length"] == len(r["input_ids"]) == len(r["labels"])
        assert CharTokenizer().decode([t for t in r["labels"] if t != IGNORE_INDEX]) == text
    ds = TokenizedDataset(exs, CharTokenizer(), style="cloze", target="label")
    assert len(ds) == 2 and ds.lengths == [r["length"] for r in ds.rows]
    with pytest.warns(UserWarning, match="2 of 2 prompts were cut"):
        tokenize_examples(exs, CharTokenizer(), style="alpaca", max_length=20)
    with pytest.raises(DataError, match="example 'ex-0'.*target alone"):
        tokenize_examples(exs, CharTokenizer(), style="alpaca", max_length=5)


# ---- collator ---------------------------------------------------------------------------------


def test_collator_right_pads_and_never_masks_by_pad_id():
    collate = make_data_collator(CharTokenizer())
    rows = [
        {"input_ids": [10, 11, 12, 3], "labels": [IGNORE_INDEX, IGNORE_INDEX, 12, 3], "length": 4, "id": "a"},
        {"input_ids": [20, 3], "labels": [IGNORE_INDEX, 3]},
        {"input_ids": torch.tensor([30]), "labels": torch.tensor([30])},
    ]
    b = collate(rows)
    assert set(b) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long and t.shape == (3, 4) for t in b.values())
    assert b["input_ids"].tolist() == [[10, 11, 12, 3], [20, 3, 3, 3], [30, 3, 3, 3]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    # the real EOS (== pad id) stays labelled; the pads are -100
    assert b["labels"].tolist() == [[-100, -100, 12, 3], [-100, 3, -100, -100], [30, -100, -100, -100]]


def test_collator_options_and_errors():
    b = make_data_collator(pad_token_id=0, pad_to_multiple_of=8)([{"input_ids": [5, 6, 7]}])
    assert b["input_ids"].shape == (1, 8) and b["labels"][0, :3].tolist() == [5, 6, 7]
    templ = make_data_collator(CharTokenizer(), response_template="R:\n")
    b = templ([{"input_ids": CharTokenizer()("x R:\nR:\nok")["input_ids"]}])
    assert CharTokenizer().decode([t for t in b["labels"][0].tolist() if t != IGNORE_INDEX]) == "ok"
    with pytest.raises(DataError, match="response template was not found"):
        templ([{"input_ids": [5, 6]}])
    with pytest.raises(DataError, match="mlm"):
        make_data_collator(CharTokenizer(), mlm=True)
    with pytest.raises(DataError, match="differ in length"):
        make_data_collator()([{"input_ids": [1, 2], "labels": [1]}])
    assert make_data_collator(CharTokenizer(), instruction_template="x").pad_token_id == 3  # extra kwargs accepted


# ---- length-grouped batches ---------------------------------------------------------------------


@pytest.mark.parametrize("n,batch_size", [(0, 4), (1, 4), (7, 3), (100, 8), (1234, 5)])
def test_length_grouping_covers_every_index_once(n, batch_size):
    g = torch.Generator().manual_seed(n)
    lengths = torch.randint(1, 300, (n,), generator=g).tolist()
    for shuffle in (True, False):
        batches = length_grouped_batches(lengths, batch_size, seed=3, shuffle=shuffle)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(n))
        assert all(1 <= len(b) <= batch_size for b in batches)


def test_length_grouping_is_seeded_and_cuts_padding():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(10, 400, (800,), generator=g).tolist()
    a = length_grouped_batches(lengths, 8, seed=1)
    assert a == length_grouped_batches(lengths, 8, seed=1)
    assert a != length_grouped_batches(lengths, 8, seed=2)

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    random_batches = [list(range(i, min(i + 8, 800))) for i in range(0, 800, 8)]
    assert padding(a) < 0.2 * padding(random_batches)
    with pytest.raises(DataError):
        length_grouped_batches(lengths, 0)


# ---- splits -------------------------------------------------------------------------------------


def pool(n: int, tag: str = "t") -> list[dict]:
    return [{"id": f"{tag}{i}", "question": f"question {tag} {i}", "choices": [], "answer": "a",
             "references": ["a"], "meta": {}} for i in range(n)]


def _keys(examples):
    return {e["id"] for e in examples}, {" ".join(e["question"].split()) for e in examples}


def assert_disjoint(data):
    parts = [_keys(s) for s in (data.train, data.valid, data.test)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i][0] & parts[j][0], "splits share an id"
            assert not parts[i][1] & parts[j][1], "splits share a question"


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


def test_load_task_real_arc_easy():
    data = load_task("ARC-Easy", data_root=SHARED_DATA, test_size=300)
    assert data.sizes == {"train": 200, "valid": 200, "test": 300}
    assert data.labels == [f"answer{k}" for k in range(1, 6)]
    assert_disjoint(data)
    full_test = load_examples(ARC_EASY / "test.jsonl")
    assert data.test == sample_subset(full_test, 300, seed=0)
    assert load_task("arc_easy", data_root=SHARED_DATA, test_size=300).train == data.train


# ---- JoLADataset compatibility ------------------------------------------------------------------


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


# ---- the bundled tokenizer: only the answer (and end-of-turn) is labelled -----------------------


@pytest.fixture(scope="module")
def arc_examples():
    exs = load_examples(ARC_EASY / "train.jsonl")
    return [exs[i] for i in (0, 1, 2, 10, 100, 1000)]


@pytest.mark.integration
@pytest.mark.parametrize("style", ["chat", "alpaca", "cloze"])
@pytest.mark.parametrize("target", ["label", "choice_text"])
def test_only_target_tokens_are_labelled_on_real_examples(smollm, arc_examples, style, target):
    tok = smollm.tokenizer
    rows = tokenize_examples(arc_examples, tok, style=style, target=target)
    for ex, row in zip(arc_examples, rows):
        prompt = format_prompt(ex, tok, style)
        text = format_target(ex, tok, style, target)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        labels = row["labels"]
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert IGNORE_INDEX not in labels[n_prompt:]
        assert row["input_ids"][:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"]
        assert tok.decode(labels[n_prompt:]) == text
        if style == "chat":
            assert text.endswith("<|im_end|>") and labels[-1] == tok.eos_token_id == tok.pad_token_id
        if target == "label":
            expected = {"chat": f"{ex['answer']}<|im_end|>", "alpaca": ex["answer"], "cloze": f" {ex['answer']}"}
            assert text == expected[style]


@pytest.mark.integration
def test_chat_prompt_and_end_of_turn_from_the_real_template(smollm, arc_examples):
    tok = smollm.tokenizer
    assert end_of_turn(tok) == "<|im_end|>"
    prompt = format_prompt(arc_examples[0], tok, "chat")
    assert prompt.endswith(f"<|im_start|>user\n{arc_examples[0]['question']}<|im_end|>\n<|im_start|>assistant\n")
    row = tokenize_pair(prompt, format_target(arc_examples[0], tok, "chat"), tok)
    digit = arc_examples[0]["answer"][-1]
    assert [tok.decode([t]) for t in row["labels"] if t != IGNORE_INDEX] == ["answer", digit, "<|im_end|>"]


@pytest.mark.integration
def test_real_batch_keeps_the_labelled_end_of_turn(smollm, arc_examples):
    tok = smollm.tokenizer
    ds = TokenizedDataset(arc_examples, tok, style="chat", target="label")
    batch = make_data_collator(tok)([ds[i] for i in range(len(ds))])
    assert batch["input_ids"].shape == (len(ds), max(ds.lengths))
    for r, n in enumerate(ds.lengths):
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        labelled = batch["labels"][r][batch["labels"][r] != IGNORE_INDEX].tolist()
        assert labelled == [t for t in ds[r]["labels"] if t != IGNORE_INDEX]
        assert labelled[-1] == tok.pad_token_id  # pad == eos, still a target


@pytest.mark.integration
def test_response_template_collator_matches_pair_labels(smollm, arc_examples):
    """JoLA's original masking (after "### Response:\\n") labels the same tokens as tokenize_pair."""
    tok = smollm.tokenizer
    collate = make_data_collator(tok, response_template="### Response:\n")
    for ex in arc_examples:
        pair = tokenize_pair(format_prompt(ex, tok, "alpaca"), format_target(ex, tok, "alpaca"), tok)
        batch = collate([{"input_ids": pair["input_ids"]}])
        assert batch["labels"][0].tolist() == pair["labels"]
