"""The `detection:` section of a training config (task=detection): the SSD loss settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from models.options import OptionError


@dataclass(frozen=True)
class DetectionConfig:
    """The `detection:` section of a training config (task=detection)."""
    loss: Literal["hard_negative", "focal"] = "hard_negative"
    neg_ratio: float = 3.0        # hard negative mining: negatives kept per positive
    min_negatives: int = 8        # ... and at least this many per image (background images teach too)
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25     # weight of object classes vs background in the focal loss
    box_weight: float = 1.0       # weight of the smooth L1 term
    max_objects: int = 0          # padded boxes per image in tf.data; 0 = the data's maximum

    def validate(self) -> None:
        if self.neg_ratio <= 0 or self.min_negatives < 0 or self.focal_gamma < 0 or self.box_weight <= 0:
            raise OptionError("detection.neg_ratio and box_weight must be > 0, min_negatives and "
                              "focal_gamma >= 0")
        if not 0 < self.focal_alpha < 1:
            raise OptionError(f"detection.focal_alpha must be in (0, 1), got {self.focal_alpha}")
