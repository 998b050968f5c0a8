"""jola_lens: JoLA (Joint Localization and Activation Editing) on TransformerLens.

Quick start::

    from jola_lens import load_model, JoLAModel, JoLAConfig
    jola = JoLAModel(load_model(), JoLAConfig())
"""

__version__ = "0.1.0"

from .config import JoLAConfig
from .edits import HeadEdit
from .gates import HardConcrete
from .loading import ModelLoadError, load_model
from .data import DataError, JoLADataset, make_data_collator
from .model import JoLALoadError, JoLAModel
from .train import JoLATrainer, TrainConfig

__all__ = [
    "__version__",
    "DataError",
    "HardConcrete",
    "HeadEdit",
    "JoLAConfig",
    "JoLADataset",
    "JoLALoadError",
    "JoLAModel",
    "JoLATrainer",
    "ModelLoadError",
    "TrainConfig",
    "load_model",
    "make_data_collator",
]
