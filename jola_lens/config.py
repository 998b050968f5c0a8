"""Configuration of a JoLA edit: where it goes, which kinds of edit, how it is gated.

Example:
    >>> from jola_lens import JoLAConfig
    >>> cfg = JoLAConfig(layers=[0, 1], edit="additive")
    >>> JoLAConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .gates import BETA, LIMITS

EDIT_KINDS = ("both", "additive", "multiplicative")
GATE_MODES = ("two", "shared", "none")
SITES = ("attn", "mlp")
GATE_INITS = ("xavier", "constant")
_TUPLE_FIELDS = ("sites", "limits")


@dataclass
class EditorConfig:
    """Base of the per-method settings dataclasses (``JoLAConfig``, ``LoRAConfig``...).

    Each subclass is a plain dataclass of JSON values; ``to_dict`` / ``from_dict`` round-trip it
    and ``from_dict`` rejects unknown fields.

    Example:
        >>> from jola_lens.editors import LoRAConfig
        >>> LoRAConfig.from_dict(LoRAConfig(rank=4).to_dict()).rank
        4
    """

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], section: str | None = None) -> "EditorConfig":
        """From a dict (JSON, YAML): unknown fields and values of the wrong type are a one-line
        ``ValueError`` naming ``section.field``; numeric strings become numbers, one value a list of one."""
        from .settings import coerce_fields

        return cls(**coerce_fields(cls, d, section))


@dataclass
class JoLAConfig(EditorConfig):
    """What to edit and how.

    Attributes:
        layers: layers that get an edit (``None``: every layer, as in the paper).
        edit: ``"both"`` (z' = (1 + g_m m) z + g_a a), ``"additive"`` (z + g_a a) or
            ``"multiplicative"`` ((1 + g_m m) z).
        gate_mode: ``"two"`` gates per head (the paper), one ``"shared"`` gate for both
            edits, or ``"none"`` (gates fixed at 1: plain per-head editing).
        sites: ``("attn",)`` edits each head's ``hook_z``; ``("mlp",)`` edits each layer's
            ``hook_mlp_out`` (the paper's MLP ablation); both may be given.
        init_std: standard deviation of the N(0, std^2) initialisation of a and m.
        gate_init: ``"xavier"`` (the JoLA code) or ``"constant"``.
        gate_init_value: log-alpha used by ``gate_init="constant"``.
        beta: Hard-Concrete temperature.
        limits: Hard-Concrete stretch interval (gamma, zeta).
    """

    layers: list[int] | None = None
    edit: str = "both"
    gate_mode: str = "two"
    sites: tuple[str, ...] = ("attn",)
    init_std: float = 1e-3
    gate_init: str = "xavier"
    gate_init_value: float = 0.0
    beta: float = BETA
    limits: tuple[float, float] = field(default_factory=lambda: tuple(LIMITS))

    def __post_init__(self) -> None:
        if isinstance(self.sites, str):
            self.sites = (self.sites,)
        self.sites = tuple(self.sites)
        self.limits = tuple(float(x) for x in self.limits)
        if self.layers is not None:
            self.layers = sorted({int(x) for x in self.layers})
            if not self.layers:
                raise ValueError("JoLAConfig.layers is empty: give None for every layer, or at least one layer")
            if self.layers[0] < 0:
                raise ValueError(f"JoLAConfig.layers must be >= 0, got {self.layers}")
        if self.edit not in EDIT_KINDS:
            raise ValueError(f"JoLAConfig.edit must be one of {EDIT_KINDS}, got {self.edit!r}")
        if self.gate_mode not in GATE_MODES:
            raise ValueError(f"JoLAConfig.gate_mode must be one of {GATE_MODES}, got {self.gate_mode!r}")
        if not self.sites or any(s not in SITES for s in self.sites) or len(set(self.sites)) != len(self.sites):
            raise ValueError(f"JoLAConfig.sites must be a non-empty subset of {SITES}, got {self.sites!r}")
        if self.gate_init not in GATE_INITS:
            raise ValueError(f"JoLAConfig.gate_init must be one of {GATE_INITS}, got {self.gate_init!r}")
        if not self.init_std >= 0:
            raise ValueError(f"JoLAConfig.init_std must be >= 0, got {self.init_std}")
        if not self.beta > 0 or len(self.limits) != 2 or not (self.limits[0] < 0 and self.limits[1] > 1):
            raise ValueError(f"bad Hard-Concrete settings beta={self.beta}, limits={self.limits}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sites"] = list(self.sites)
        d["limits"] = list(self.limits)
        return d

    @classmethod
    def get_jola_config(cls, default: bool = True, config_path: Any = None) -> dict[str, Any]:
        """The original package's nested config dict (:func:`jola_lens.compat.get_jola_config`)."""
        from .compat import get_jola_config

        return get_jola_config(cls, default=default, config_path=config_path)

    @classmethod
    def from_dict(cls, d: dict[str, Any], section: str | None = None) -> "JoLAConfig":
        # JSON and YAML have no tuples: to_dict writes the tuple fields as lists (coerce_fields turns them back)
        return super().from_dict(d, section)  # type: ignore[return-value]


