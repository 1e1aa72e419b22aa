"""Run a .tflite through MediaPipe Tasks, in MediaPipe's own venv (.venv-mediapipe):

    .venv-mediapipe/bin/python pipeline/mediapipe_runner.py job.json

Started by pipeline.mediapipe_check; imports only the standard library, numpy and
mediapipe (its venv has neither TensorFlow nor this package: mediapipe pins absl-py ~=2.3,
tensorflow-model-optimization ~=1.2). job.json: {"model": path, "task": "classification" |
"detection", "images": .npy of uint8 (N, H, W, 3) at the model's input size, "upscale": f,
"out": path}. Each image is enlarged f times (nearest neighbour, f even) before MediaPipe
sees it: its resize back to the model size then gives the same pixels (every bilinear or area
sample falls inside one f x f block), while its boxes, rounded to whole pixels of the image it
was given, lose only 1/f of a model pixel. Writes out: classification {"top1": [N ints],
"score": [N floats]}; detection {"detections": per image [[x0, y0, x1, y1 (normalized), score,
label], ...]}. A model MediaPipe refuses: {"error": its message}.
"""
import json
import sys

import numpy as np


def main(job_path: str) -> int:
    job = json.load(open(job_path))
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    images = np.load(job["images"])
    f = int(job["upscale"])
    base = BaseOptions(model_asset_path=job["model"])
    out = {}
    try:
        if job["task"] == "classification":
            opts = vision.ImageClassifierOptions(base_options=base, max_results=1)
            make = vision.ImageClassifier.create_from_options
        else:
            opts = vision.ObjectDetectorOptions(base_options=base, score_threshold=0.0, max_results=-1)
            make = vision.ObjectDetector.create_from_options
        with make(opts) as task:
            top1, score, dets = [], [], []
            for img in images:
                big = np.ascontiguousarray(img.repeat(f, 0).repeat(f, 1))
                frame = mp.Image(image_format=mp.ImageFormat.SRGB, data=big)
                if job["task"] == "classification":
                    best = task.classify(frame).classifications[0].categories[0]
                    top1.append(int(best.index))
                    score.append(float(best.score))
                else:
                    h, w = big.shape[:2]
                    dets.append([[d.bounding_box.origin_x / w, d.bounding_box.origin_y / h,
                                  (d.bounding_box.origin_x + d.bounding_box.width) / w,
                                  (d.bounding_box.origin_y + d.bounding_box.height) / h,
                                  float(d.categories[0].score), d.categories[0].category_name]
                                 for d in task.detect(frame).detections])
            out = {"top1": top1, "score": score} if job["task"] == "classification" else {"detections": dets}
    except (ValueError, RuntimeError) as e:   # MediaPipe refuses the model: its status message
        out = {"error": str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}
    with open(job["out"], "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
