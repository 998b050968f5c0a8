"""Named training recipes: the settings a run starts from, kept as data.

Two recipes ship:

* ``demo`` (the default everywhere: ``TrainConfig()``, ``jola-lens train``, the notebooks and the
  studies): 3 epochs, the paper's penalty ``lambda * sum P(open)`` at a constant ``lambda = 5e-3``,
  a gate learning rate of 0.2 and 10 warm-up steps. On the bundled SmolLM2-135M-Instruct this
  closes most gates within the demo's budget (about 80 of 270 additive gates stay open on the
  bundled ARC-Easy sample).
* ``paper``: the settings of the JoLA paper and its released code (METHODS.md 1.6): 20 epochs,
  50 warm-up steps, the released code's penalty with its ``expon`` schedule, one learning rate for
  edits and gates. On the bundled model these keep every gate open after 3 epochs; they are one
  flag away (``--recipe paper``) for reproducing the paper on the models it used.

Example:
    >>> from jola_lens.recipes import get_recipe, list_recipes
    >>> list_recipes()
    ['demo', 'paper']
    >>> tc = get_recipe("demo").train_config(seed=7)
    >>> tc.epochs, tc.penalty, tc.gate_lambda, tc.seed
    (3, 'paper', 0.005, 7)
    >>> get_recipe("paper").train_config().epochs
    20
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from .config import JoLAConfig
    from .train import TrainConfig

RecipeName = Literal["demo", "paper"]

#: The training fields a recipe sets; every other TrainConfig field keeps its dataclass default.
_DEMO_TRAIN: dict[str, Any] = dict(epochs=3, lr=5e-3, gate_lr=0.2, penalty="paper", gate_schedule="constant",
                                   gate_lambda=5e-3, warmup_steps=10)
_PAPER_TRAIN: dict[str, Any] = dict(epochs=20, lr=5e-3, gate_lr=None, penalty="jola_code", gate_schedule="expon",
                                    gate_lambda=None, warmup_steps=50)


@dataclass(frozen=True)
class Recipe:
    """A named set of training and edit settings.

    Attributes:
        name: the recipe's name (``get_recipe(name)``).
        description: one line on what it is for.
        train: :class:`~jola_lens.train.TrainConfig` fields (the rest keep their defaults).
        jola: :class:`~jola_lens.config.JoLAConfig` fields.
    """

    name: str
    description: str
    train: dict[str, Any] = field(default_factory=dict)
    jola: dict[str, Any] = field(default_factory=dict)

    def train_config(self, **overrides: Any) -> "TrainConfig":
        """A :class:`~jola_lens.train.TrainConfig` with this recipe's settings, then ``overrides``."""
        from .train import TrainConfig

        return TrainConfig(**{**self.train, **overrides})

    def jola_config(self, **overrides: Any) -> "JoLAConfig":
        """A :class:`~jola_lens.config.JoLAConfig` with this recipe's settings, then ``overrides``."""
        from .config import JoLAConfig

        return JoLAConfig(**{**self.jola, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES: dict[str, Recipe] = {
    "demo": Recipe("demo", "works on the bundled SmolLM2-135M in 3 epochs: paper penalty, constant lambda 5e-3, "
                   "gate lr 0.2", train=dict(_DEMO_TRAIN)),
    "paper": Recipe("paper", "the JoLA paper's and released code's settings: 20 epochs, expon schedule, "
                    "released-code penalty", train=dict(_PAPER_TRAIN)),
}

#: The recipe used when none is named.
DEFAULT_RECIPE: RecipeName = "demo"

#: The demo recipe's training settings as a plain dict (formerly ``jola_lens.cli.DEMO_DEFAULTS``).
DEMO_DEFAULTS: dict[str, Any] = dict(_DEMO_TRAIN)


def list_recipes() -> list[str]:
    """The names :func:`get_recipe` accepts."""
    return sorted(RECIPES)


def get_recipe(name: str | Recipe = DEFAULT_RECIPE) -> Recipe:
    """The recipe called ``name`` (a :class:`Recipe` is returned as it is).

    Example:
        >>> get_recipe("nope")
        Traceback (most recent call last):
        ...
        ValueError: unknown recipe 'nope'; choose from ['demo', 'paper']
    """
    if isinstance(name, Recipe):
        return name
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {list_recipes()}")
    return RECIPES[name]
