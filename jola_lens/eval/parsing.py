"""Answer parsers: a label, an MMLU-Pro letter or an option's text in generated text.

Example:
    >>> parse_label("I pick Answer2.", ["answer1", "answer2"]), parse_mmlu_letter("Answer: (c)")
    ('answer2', 'C')
    >>> parse_choice_text("Blue, of course", ["red", "blue"])
    1
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

__all__ = ["auto_parser", "parse_choice_text", "parse_label", "parse_mmlu_letter"]


def parse_label(text: str | None, labels: Sequence[str]) -> str | None:
    """The first label that occurs in ``text`` as a whole word (case-insensitive), as spelled in ``labels``.

    "Whole word": not preceded or followed by a letter, digit or underscore, so ``answer12``
    is not ``answer1``. Longer labels are tried first at the same position.

    Example:
        >>> labs = ["answer1", "answer2", "answer12"]
        >>> parse_label("The correct answer is Answer2.", labs)
        'answer2'
        >>> parse_label("answer12 is right", labs), parse_label("answer12", ["answer1"])
        ('answer12', None)
        >>> parse_label("TRUE, because ...", ["true", "false"]), parse_label("no idea", labs)
        ('true', None)
    """
    if not text or not labels:
        return None
    canon = {}
    for lab in labels:
        canon.setdefault(lab.lower(), lab)
    alts = "|".join(re.escape(lab) for lab in sorted(canon, key=len, reverse=True) if lab)
    if not alts:
        return None
    m = re.search(rf"(?<![0-9A-Za-z_])(?:{alts})(?![0-9A-Za-z_])", text, flags=re.IGNORECASE)
    return canon[m.group(0).lower()] if m else None


def parse_mmlu_letter(text: str | None, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter the model commits to, or None.

    Tried in order, each taking its first match:

    1. an answer statement: ``Answer: C``, ``the correct answer is (B)``, ``option D`` ...
       (keyword case-insensitive; the letter uppercase, or either case inside parentheses);
    2. a leading letter: ``C``, ``C. text``, ``(C) text``, ``C) text``, ``C: text``;
    3. a parenthesised letter anywhere: ``... so (D)``.

    A capital letter inside an ordinary word or sentence (``A person``, ``I think``) is not an answer.

    Example:
        >>> parse_mmlu_letter("Answer: C"), parse_mmlu_letter("The answer is (B)")
        ('C', 'B')
        >>> parse_mmlu_letter("C. some text"), parse_mmlu_letter("  D"), parse_mmlu_letter("(e) blah")
        ('C', 'D', 'E')
        >>> parse_mmlu_letter("A person would say so"), parse_mmlu_letter("I think it is hard")
        (None, None)
        >>> parse_mmlu_letter("Answer: J", letters="ABCD")
        >>> parse_mmlu_letter("Because of X, the correct option is **F**")
        'F'
    """
    if not text:
        return None
    up = "".join(sorted(set(c for c in letters.upper() if c.isalpha())))
    if not up:
        return None
    cls_up = f"[{re.escape(up)}]"
    cls_any = f"[{re.escape(up + up.lower())}]"
    letter = rf"(?:\(\s*({cls_any})\s*\)|\*{{0,2}}({cls_up})\*{{0,2}}(?![0-9A-Za-z_]))"
    stated = re.search(
        rf"(?i:\b(?:answer|option|choice)\b(?:\s+is)?)\s*(?:[:\-=]\s*)?(?:\*{{0,2}}\s*)?{letter}",
        text,
    )
    if stated:
        return (stated.group(1) or stated.group(2)).upper()
    lead = re.match(
        rf"\s*\*{{0,2}}(?:\(\s*({cls_any})\s*\)|({cls_up})(?=\*{{0,2}}\s*(?:[.:)\]]|\n|$)))",
        text,
    )
    if lead:
        return (lead.group(1) or lead.group(2)).upper()
    paren = re.search(rf"\(\s*({cls_any})\s*\)", text)
    if paren:
        return paren.group(1).upper()
    return None


def auto_parser(labels: Sequence[str]) -> Callable[[str], str | None]:
    """The parser for a label set: :func:`parse_mmlu_letter` for single capital letters, else :func:`parse_label`.

    Example:
        >>> auto_parser(["A", "B", "C"])("The answer is (b)"), auto_parser(["true", "false"])("False.")
        ('B', 'false')
    """
    if all(len(x) == 1 and x.isalpha() and x.isupper() for x in labels):
        letters = "".join(labels)
        return lambda text: parse_mmlu_letter(text, letters)
    return lambda text: parse_label(text, labels)


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", text.lower()).strip()


def parse_choice_text(text: str, choices: list[str]) -> int | None:
    """Index of the option the generated ``text`` names: exact (normalised) match of its first
    line, else the unique option that the line starts with. ``None`` if none or ambiguous.

    Example:
        >>> choices = ["red", "red and blue", "green"]
        >>> parse_choice_text(" Green.", choices), parse_choice_text("red and blue!", choices)
        (2, 1)
        >>> parse_choice_text("purple", choices) is None
        True
    """
    line = _norm((text or "").strip().split("\n")[0])
    if not line:
        return None
    normed = [_norm(c) for c in choices]
    exact = [i for i, c in enumerate(normed) if c and c == line]
    if len(exact) == 1:
        return exact[0]
    starts = [i for i, c in enumerate(normed) if c and line.startswith(c)]
    if len(starts) == 1:
        return starts[0]
    if len(starts) > 1:  # the longest option that fits (e.g. "red" vs "red and blue")
        best = max(starts, key=lambda i: len(normed[i]))
        if sum(len(normed[i]) == len(normed[best]) for i in starts) == 1:
            return best
    return None
