"""Label sets, question stems and gold indices (jola_lens.tasks.choices)."""

from __future__ import annotations

from jola_lens.tasks import gold_choice_index, label_set, load_examples, question_stem

from .helpers import ARC_Q, BOOLQ_Q, MMLU_Q, ours


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


def test_real_arc_easy_stems_have_no_prompt_scaffolding(shared_data):
    for ex in load_examples(shared_data / "ARC-Easy" / "test.jsonl")[:200]:
        stem = question_stem(ex)
        assert stem and "Please choose" not in stem and "Answer1:" not in stem and "Answer format" not in stem
        assert stem in ex["question"]
