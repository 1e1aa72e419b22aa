"""The `detection:` section of a training config (task=detection): the SSD loss settings, and
the YOLO detector's assigner and loss weights (pipeline.tasks.detection.yolo_loss)."""
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
    # yolo: task-aligned assignment (models.boxes.task_aligned_assign) and loss weights (YOLOv8's)
    tal_topk: int = 10            # positives per ground truth (at most)
    tal_alpha: float = 0.5        # alignment = score^alpha * IoU^beta
    tal_beta: float = 6.0
    tal_radius: float = 2.5       # candidates: in the box widened to >= this many cells per axis
    cls_weight: float = 1.0       # BCE on the sigmoid scores (YOLOv8: 0.5; 1.0 measured better here, README)
    iou_weight: float = 7.5       # 1 - CIoU
    dfl_weight: float = 1.5       # distribution focal loss on the side distances

    def validate(self) -> None:
        if self.neg_ratio <= 0 or self.min_negatives < 0 or self.focal_gamma < 0 or self.box_weight <= 0:
            raise OptionError("detection.neg_ratio and box_weight must be > 0, min_negatives and "
                              "focal_gamma >= 0")
        if self.tal_topk < 1 or self.tal_alpha < 0 or self.tal_beta < 0 or self.tal_radius < 0:
            raise OptionError("detection.tal_topk must be >= 1, tal_alpha, tal_beta and tal_radius >= 0")
        if min(self.cls_weight, self.iou_weight, self.dfl_weight) < 0:
            raise OptionError("detection.cls_weight, iou_weight and dfl_weight must be >= 0")
        if not 0 < self.focal_alpha < 1:
            raise OptionError(f"detection.focal_alpha must be in (0, 1), got {self.focal_alpha}")
