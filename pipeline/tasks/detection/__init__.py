"""Detection: boxes and labels per image (d2l 14.3-14.7, SSD). The task object is task.py's;
data.py, annotations.py (one reader per layout in layouts/) and scenes.py load boxes, augment.py
moves them with the pixels, train.py has the targets and the loss, evaluate.py COCO mAP and plots,
export.py the graph with decoding + NMS inside every file, parity.py the detection gate."""
