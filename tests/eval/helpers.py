"""Shared helpers of the evaluation tests: naive references, a character tokenizer, fixed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch

ARC_LABELS = ["answer1", "answer2", "answer3", "answer4"]


def naive_score(model, prompt: list[int], cont: list[int]) -> float:
    """Reference: one unbatched, unpadded forward of prompt + the whole continuation."""
    with torch.inference_mode():
        lp = torch.log_softmax(model(torch.tensor([prompt + cont]))[0].float(), -1)
    return float(sum(lp[len(prompt) - 1 + k, t] for k, t in enumerate(cont)))


def naive_greedy(model, prompt: list[int], n: int, eos: int | None = None) -> list[int]:
    """Reference: recompute the whole sequence each step (no cache, no padding)."""
    seq = list(prompt)
    with torch.inference_mode():
        for _ in range(n):
            t = int(model(torch.tensor([seq]))[0, -1].argmax())
            seq.append(t)
            if t == eos:
                break
    return seq[len(prompt):]


def no_hooks_left(hooked) -> bool:
    return all(len(hp.fwd_hooks) == 0 and len(hp.bwd_hooks) == 0 for hp in hooked.hook_dict.values())


CHARS = "\n" + "".join(chr(c) for c in range(32, 126))  # 95 characters -> ids 2..96


class CharTokenizer:
    """A character-level stand-in tokenizer for the tiny model (vocab 97: pad 0, eos 1, then CHARS)."""

    padding_side = "right"
    pad_token_id = 0
    eos_token_id = 1
    bos_token_id = None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [CHARS.index(c) + 2 for c in text]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(CHARS[i - 2] if i >= 2 else ("" if skip_special_tokens else "<s>") for i in ids)


def chat(tok, text: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def arc_examples(folder: Path, n: int) -> list[dict]:
    """The first ``n`` ARC-Easy test examples of the shared data ``folder`` (the ``shared_data`` fixture)."""
    with (folder / "ARC-Easy" / "test.jsonl").open() as f:
        return [json.loads(line) for _, line in zip(range(n), f)]


PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [3], [20, 21, 22, 23]]


CONTS = [
    [[40, 1], [40, 2], [40, 3]],  # shares all but the last token: fast path
    [[50], [51], [52], [53]],  # single tokens: fast path
    [[7, 8, 9], [7, 9], [2]],  # mixed lengths: slow path
    [[60, 61, 62], [60, 70, 62]],  # differ in the middle: slow path
]


GEN_PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12], [13, 14, 15], [16, 17, 18, 19, 20]]
