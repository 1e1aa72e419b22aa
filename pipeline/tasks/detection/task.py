"""The detection task: images with boxes, SSD and YOLO detectors, decoding + NMS inside every file.

Data: shapes_det or a COCO/VOC/YOLO/CSV folder (data.py); targets: anchor labelling (SSD) or the
padded ground truth (YOLO: assigned in its loss) (train.py); loss: SSD's (train.py) or YOLO's
(yolo_loss.py); metrics: COCO mAP with pycocotools on every split, the detections made
by the one decoder the files hold (evaluate.py, models.decoder); export: the graph wrapped with
decoding + NMS (export.py), each file gated on its mAP drop (parity.py); report: mAP beside size
and latency.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from models import create_detector, get_contract
from models.decoder import metadata_block
from models.detector import DETECTORS
from models.options import OptionError
from pipeline.callbacks import bind
from pipeline.data import DataError
from pipeline.tasks.base import Task
from pipeline.tasks.detection import augment as augment_
from pipeline.tasks.detection import export, parity, train
from pipeline.tasks.detection import recipe as recipe_
from pipeline.tasks.detection.data import load_detection_dataset
from pipeline.tasks.detection.evaluate import predict_detections
from serving.metadata import tensor_spec

DETECTION_KEYS = ("map50", "map", "map50_keras", "map_keras", "max_map_drop", "reproduced")
REFERENCE_COLUMNS = 7   # a reference row: x0, y0, x1, y1, score, class, valid


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


class DetectionTask(Task):
    name = "detection"
    metric = "map"
    monitor = "val_map"
    formats = ("tflite_fp32", "tflite_fp16", "tflite_dynamic", "tflite_int8", "onnx")
    integer_io = False   # a detector file outputs boxes and scores in float
    plot_metric = ("map", "test mAP@[.5:.95] (%)")
    summary_columns: ClassVar = (
        ("size KB", 10, ".1f", lambda r, p: r["size_bytes"] / 1024),
        ("mAP@.5", 8, ".3f", lambda r, p: p["map50"]), ("keras", 8, ".3f", lambda r, p: p["map50_keras"]),
        ("mAP", 8, ".3f", lambda r, p: p["map"]), ("keras", 8, ".3f", lambda r, p: p["map_keras"]),
        ("repro", 8, ".3f", lambda r, p: p["reproduced"]))
    report_columns: ClassVar = (
        ("p50 ms", True, lambda r: f"{r['p50_ms']:.3f}"), ("p90 ms", True, lambda r: f"{r['p90_ms']:.3f}"),
        ("invoke ms", True, lambda r: f"{r['invoke_ms']:.3f}"),
        ("mAP@.5", True, lambda r: _fmt(r.get("map50"), ".4f")),
        ("mAP@[.5:.95]", True, lambda r: _fmt(r.get("map"), ".4f")),
        ("Keras mAP@.5", True, lambda r: _fmt(r.get("map50_keras"), ".4f")),
        ("Keras mAP@[.5:.95]", True, lambda r: _fmt(r.get("map_keras"), ".4f")),
        ("max drop", True, lambda r: "-" if r.get("max_map_drop") is None
         else f"{100 * r['max_map_drop']:.0f} pt"))
    report_text = ("Latency through `serving`, end to end including the decoding + NMS inside each file "
                   "(image decode excluded; the .keras row decodes + NMS in numpy), {threads} thread(s), "
                   "batch 1, {runs} runs after {warmup} warm-up; mAP@.5 and mAP@[.5:.95] are the detection "
                   "gate's (pycocotools, held-out test split, through serving), beside the Keras "
                   "detector's on the same images (the test mAP of metrics.json: the same decoder).")

    # ------------------------------------------------------------------ training

    def check_model(self, name: str) -> None:
        if name not in DETECTORS:
            raise OptionError(f"task=detection with model={name}: a detector needs model=ssd or "
                              "model=yolo, and model.backbone=<family>")

    def recipe(self, cfg: Any) -> tuple[Any, str | None]:
        return recipe_.apply(cfg)

    def load_data(self, data_cfg: Any, shape: tuple[int, int, int]) -> Any:
        """The detection dataset at the model's input size (training also needs its val split:
        check_training_data)."""
        if data_cfg.source in ("digits", "shapes"):
            raise DataError(f"data={data_cfg.source} has no boxes; task=detection takes data=shapes_det "
                            "or a folder in COCO, VOC, YOLO or CSV layout")
        return load_detection_dataset(data_cfg, image_size=shape[:2], channels=shape[2])

    def build_model(self, name: str, **kwargs: Any) -> Any:
        return create_detector(name, **kwargs)

    def tf_dataset(self, split: Any, *, cfg: Any, contract: Any, training: bool) -> Any:
        if len(split) == 0:
            return None
        settings = contract.detection
        mosaic_on = None
        if training:   # the training set of this run: its close_mosaic switch (epoch_callbacks sets it)
            self._mosaic_phase = None
            if cfg.augment.mosaic and cfg.augment.close_mosaic:
                import tensorflow as tf

                mosaic_on = tf.Variable(True, trainable=False, name="mosaic_on")
                self._mosaic_phase = (mosaic_on, cfg.epochs, cfg.augment.close_mosaic)
        anchors = settings.anchors() if settings.encoding == "center_offsets" else None   # yolo: gt itself
        return train.make_dataset(split, anchors, batch_size=cfg.batch_size, training=training,
                                  augment=cfg.augment if training else None, seed=cfg.seed,
                                  match_iou=settings.match_iou, max_objects=cfg.detection.max_objects,
                                  mosaic_on=mosaic_on)

    def loss_and_metrics(self, cfg: Any, contract: Any, k: Any) -> tuple[Any, list]:
        return train.make_loss(cfg.detection, contract.num_classes, contract.detection), []

    def check_training_data(self, data: Any) -> None:
        super().check_training_data(data)
        if len(data.val) == 0:
            raise DataError(f"data={data.source}: task=detection needs a validation split "
                            "(data.val_split > 0 or a val split in the annotations): val mAP picks the "
                            "checkpoint")

    def epoch_callbacks(self, k: Any, data: Any, shape: tuple[int, ...]) -> list:
        phase = getattr(self, "_mosaic_phase", None)   # set by tf_dataset(training=True) of this run
        switch = [bind(k, augment_.MosaicPhase)(*phase)] if phase else []
        return [*switch, bind(k, train.ValMAP)(data.val, data.class_names, shape[:2])]

    def finetune_supported(self) -> None:
        raise OptionError("fine-tuning a detector is not supported yet; train it with task=detection")

    def preview_grid(self, data: Any, augment: Any, rows: int, cols: int, seed: int, out: Any) -> str:
        return augment_.preview_grid(data, augment, rows, cols, seed, out)

    def evaluate(self, model: Any, data: Any, tf_data: Any) -> tuple[dict, dict]:
        return train.evaluate_all(model, data)

    def write_plots(self, paths: Any, metrics: dict, shown: dict, class_names: Sequence[str],
                    title: str, contract: Any) -> None:
        train.write_plots(paths, shown, class_names, title, contract.detection.score_threshold)

    def run_metrics(self, contract: Any) -> dict[str, Any]:
        return {"num_anchors": contract.detection.num_anchors}

    def artifacts(self, paths: Any) -> dict[str, Any]:
        return {"pr_curves": paths.pr_curves, "val_grid": paths.val_grid}

    def headline(self, metrics: dict[str, Any]) -> str:
        return f"test mAP@.5 {metrics['test_map50']:.3f}, mAP@[.5:.95] {metrics['test_map']:.3f}"

    # ------------------------------------------------------------------ export

    def gate_images(self, data: Any, idx: np.ndarray, contract: Any, which: str
                    ) -> tuple[np.ndarray, np.ndarray, Any]:
        split = getattr(data, which).subset(idx)
        return split.images, np.zeros(len(idx), np.int32), split

    def reference(self, model: Any, images: np.ndarray) -> np.ndarray:
        """The Keras detector's detections through the one decoder (the training evaluation's
        predict_detections), padded to K: (N, K, 7) rows x0, y0, x1, y1, score, class, valid."""
        k = get_contract(model).detection.max_detections
        out = np.zeros((len(images), k, REFERENCE_COLUMNS), np.float32)
        for i, (b, s, c) in enumerate(predict_detections(model, images)):
            n = len(s)
            out[i, :n, :4], out[i, :n, 4], out[i, :n, 5], out[i, :n, 6] = b, s, c, 1.0
        return out

    def unpack_reference(self, array: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        rows = [r[r[:, 6] > 0] for r in array]
        return [(r[:, :4], r[:, 4], r[:, 5].astype(np.int32)) for r in rows]

    def export_graph(self, model: Any) -> tuple[Any, list | None]:
        """The detector with decoding + NMS inside, at a fixed batch of 1."""
        import tensorflow as tf

        return export.export_model(model), [tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)]

    def check_file(self, family: str, file: Any, spec: Any, options: dict[str, Any]) -> list[str]:
        return export.tflite_problems(file, spec) if family == "tflite" else export.onnx_problems(file)

    def output_metadata(self, records: list[dict[str, Any]], where: str, contract: Any
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The four outputs by name, and what the file bakes in (models.decoder.metadata_block)."""

        outputs = export.name_outputs(records, where)
        return outputs["boxes"], {"outputs": {k: tensor_spec(**v) for k, v in outputs.items()},
                                  "detection": metadata_block(contract.detection)}

    def standard_outputs(self, contract: Any) -> list[dict[str, Any]]:
        """The four NMS outputs (found by the file's signature keys, models.decoder.OUTPUT_NAMES)
        under the names MediaPipe's ObjectDetector looks them up by; the boxes' index order is
        left, top, right, bottom as they sit in our rel_xyxy layout (the schema's default)."""
        return [{"key": "boxes", "name": "location", "kind": "boxes", "box_index": [0, 1, 2, 3],
                 "description": "boxes: left, top, right, bottom, normalized 0..1"},
                {"key": "classes", "name": "category", "kind": "categories",
                 "description": "class index of each box (0-based, into the labels)"},
                {"key": "scores", "name": "score", "kind": "scores", "description": "score of each box"},
                {"key": "count", "name": "number of detections", "kind": "count",
                 "description": "number of valid rows"}]

    def parity(self, path: Any, spec: Any, images: Any, reference: Any, gate: Any) -> dict[str, Any]:
        return parity.check_detector(path, spec, images.test_split, reference, gate)

    # ------------------------------------------------------------------ report

    def report_row(self, art: dict[str, Any], bench: dict[str, Any]) -> dict[str, Any]:
        parity_ = art.get("parity") or {}
        return {"file": art["file"], "format": art["format"], "task": self.name,
                "size_kb": art["size_bytes"] / 1024,
                "gzip_kb": art["size_gzip_bytes"] / 1024 if art.get("size_gzip_bytes") else None,
                "p50_ms": bench["latency_ms"]["p50"], "p90_ms": bench["latency_ms"]["p90"],
                "invoke_ms": bench["invoke_ms"]["p50"], "overhead_pct": bench["overhead_pct"],
                "input_dtype": bench["input_dtype"], **{k: parity_.get(k) for k in DETECTION_KEYS},
                "gate_passed": parity_.get("passed")}

    def close_to_source(self, row: dict[str, Any], keras_accuracy: float | None) -> bool:
        """Both mAPs within the file's own gate drop (max_map_drop) of Keras' on the same split."""
        slack = row.get("max_map_drop") or 0.0
        return all(row.get(k) is None or row.get(f"{k}_keras") is None
                   or row[k] >= row[f"{k}_keras"] - slack - 1e-12 for k in ("map50", "map"))

    def recommend_why(self, row: dict[str, Any]) -> str:
        return f"within {100 * (row.get('max_map_drop') or 0):.0f} point(s) of Keras' mAP"

    def keras_row(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {**row, **{k: rows[0].get(f"{k}_keras") for k in ("map50", "map")}}
