"""Answer-only tokenisation: prompt and target tokenised separately, labels on the target tokens only.

Training pairs are built as ``prompt`` + ``target`` (see :mod:`jola_lens.tasks.prompts`) and
tokenised **separately**, so the loss covers exactly the target tokens (the answer, plus the chat
end-of-turn marker for ``style="chat"``), and the prompt tokens are the ones the model sees at
generation time.

Example:
    >>> from jola_lens.tasks.tokenize import tokenize_pair
    >>> class Chars:  # a stand-in tokenizer: one id per character
    ...     def __call__(self, texts, add_special_tokens=False):
    ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
    >>> tokenize_pair("Q:", " A", Chars())["labels"]
    [-100, -100, 32, 65]
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping, Sequence

import torch

from .prompts import DEFAULT_PROMPT_STYLE, format_prompt, format_target
from .schema import DataError, DataNote

__all__ = ["IGNORE_INDEX", "TokenizedDataset", "tokenize_examples", "tokenize_pair"]


#: Label value that the loss ignores (PyTorch's ``cross_entropy`` default).
IGNORE_INDEX = -100


def _encode_many(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _bos(tokenizer: Any, prepend_bos: bool) -> list[int]:
    if not prepend_bos:
        return []
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise DataError("prepend_bos=True but the tokenizer has no bos_token_id")
    return [int(bos)]


def _assemble(prompt_ids: list[int], target_ids: list[int], bos: list[int], max_length: int) -> dict[str, list[int]]:
    if not target_ids:
        raise DataError("the target is empty after tokenisation")
    room = max_length - len(bos) - len(target_ids)
    if room < 0:
        raise DataError(
            f"the target alone is {len(target_ids)} tokens{' (+1 BOS)' if bos else ''}, "
            f"more than max_length={max_length}"
        )
    if len(prompt_ids) > room:  # keep the end of the prompt: it holds the question and the reply marker
        prompt_ids = prompt_ids[len(prompt_ids) - room :]
    context = bos + prompt_ids
    return {"input_ids": context + target_ids, "labels": [IGNORE_INDEX] * len(context) + list(target_ids)}


def tokenize_pair(
    prompt: str, target: str, tokenizer: Any, *, max_length: int = 400, prepend_bos: bool = False
) -> dict[str, list[int]]:
    """Token ids of ``prompt + target`` with labels on the target tokens only.

    Prompt and target are tokenised separately (``add_special_tokens=False``), so the prompt
    tokens equal those of the prompt alone at generation time. A too-long prompt loses
    tokens on the left (after the BOS if ``prepend_bos``); the target is never cut.

    Raises:
        DataError: the target alone (plus BOS) is longer than ``max_length``, or is empty.

    Example:
        >>> class Chars:  # a stand-in tokenizer: one id per character
        ...     bos_token_id = 0
        ...     def __call__(self, texts, add_special_tokens=False):
        ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
        >>> tokenize_pair("Q:", "yes", Chars(), prepend_bos=True)
        {'input_ids': [0, 81, 58, 121, 101, 115], 'labels': [-100, -100, -100, 121, 101, 115]}
        >>> tokenize_pair("long prompt", "ok", Chars(), max_length=4)["input_ids"]
        [112, 116, 111, 107]
    """
    prompt_ids, target_ids = _encode_many(tokenizer, [prompt, target])
    return _assemble(prompt_ids, target_ids, _bos(tokenizer, prepend_bos), max_length)


def tokenize_examples(
    examples: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    *,
    style: str = DEFAULT_PROMPT_STYLE,
    target: str = "label",
    max_length: int = 400,
    prepend_bos: bool = False,
    add_eos: bool = False,
) -> list[dict[str, Any]]:
    """Tokenise examples once for training: ``id``, ``input_ids``, ``labels``, ``length`` each.

    Uses :func:`format_prompt`, :func:`format_target` and the rules of :func:`tokenize_pair`
    (batched). Warns once if any prompt had to be truncated.

    Example:
        >>> class Chars:  # a stand-in tokenizer: one id per character
        ...     def __call__(self, texts, add_special_tokens=False):
        ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
        >>> ex = {"id": "q1", "question": "Sky?", "choices": ["blue", "red"], "answer": "answer1"}
        >>> row = tokenize_examples([ex], Chars(), style="cloze", target="choice_text")[0]
        >>> row["id"], row["length"], "".join(chr(t) for t in row["labels"] if t != -100)
        ('q1', 27, ' blue')

    With SmolLM2::

        rows = tokenize_examples(exs, model.tokenizer, style="chat", target="label")
        rows[0]["length"], sum(l != -100 for l in rows[0]["labels"])   # (..., 3): "answer", "2", "<|im_end|>"
    """
    prompts = [format_prompt(ex, tokenizer, style) for ex in examples]
    targets = [format_target(ex, tokenizer, style, target, add_eos=add_eos) for ex in examples]
    if not prompts:
        return []
    prompt_ids = _encode_many(tokenizer, prompts)
    target_ids = _encode_many(tokenizer, targets)
    bos = _bos(tokenizer, prepend_bos)
    rows, truncated = [], 0
    for ex, p, t in zip(examples, prompt_ids, target_ids):
        try:
            pair = _assemble(p, t, bos, max_length)
        except DataError as e:
            raise DataError(f"example {ex.get('id')!r}: {e}") from None
        truncated += len(pair["input_ids"]) < len(bos) + len(p) + len(t)
        rows.append({"id": ex.get("id"), **pair, "length": len(pair["input_ids"])})
    if truncated:
        warnings.warn(f"{truncated} of {len(rows)} prompts were cut on the left to fit max_length={max_length}",
                      DataNote, stacklevel=2)
    return rows


class TokenizedDataset(torch.utils.data.Dataset):
    """A map-style dataset of :func:`tokenize_examples` rows (tokenised once, at construction).

    Example:
        >>> class Chars:  # a stand-in tokenizer: one id per character
        ...     def __call__(self, texts, add_special_tokens=False):
        ...         return {"input_ids": [[ord(c) for c in t] for t in texts]}
        >>> exs = [{"id": str(i), "question": "Q" * i, "choices": [], "answer": "A"} for i in (1, 3)]
        >>> ds = TokenizedDataset(exs, Chars(), style="alpaca")
        >>> len(ds), [n - ds.lengths[0] for n in ds.lengths]
        (2, [0, 2])

    With SmolLM2::

        ds = TokenizedDataset(exs, model.tokenizer, style="chat")
        batches = length_grouped_batches(ds.lengths, batch_size=8, seed=0)
        batch = make_data_collator(model.tokenizer)([ds[i] for i in batches[0]])
    """

    def __init__(self, examples: Sequence[Mapping[str, Any]], tokenizer: Any, **kwargs: Any) -> None:
        self.rows = tokenize_examples(examples, tokenizer, **kwargs)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]

    @property
    def lengths(self) -> list[int]:
        """Token count of every row (for :func:`length_grouped_batches`)."""
        return [r["length"] for r in self.rows]
