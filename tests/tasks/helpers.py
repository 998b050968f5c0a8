"""Shared helpers of the task-data tests: example rows, a stand-in tokenizer, split checks."""

from __future__ import annotations

import json
from pathlib import Path

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
