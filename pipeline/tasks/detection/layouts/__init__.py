"""One module per annotation layout (COCO, VOC, YOLO, CSV); pipeline.tasks.detection.annotations
picks one and checks what it found."""
from pipeline.tasks.detection.layouts.coco import read_coco
from pipeline.tasks.detection.layouts.common import Found, Skipper
from pipeline.tasks.detection.layouts.csvfiles import read_csv
from pipeline.tasks.detection.layouts.voc import read_voc
from pipeline.tasks.detection.layouts.yolo import read_yolo

READERS = {"coco": read_coco, "voc": read_voc, "yolo": read_yolo, "csv": read_csv}

__all__ = ["READERS", "Found", "Skipper"]
