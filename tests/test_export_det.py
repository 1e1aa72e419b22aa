"""Detector export (issue 12): decoding + NMS inside every file, builtin ops only, the four fixed
outputs, metadata; the export table's task column. One tiny SSD (64 px, random weights) is
converted once per session to every detection format (tflite_fp32/fp16/dynamic/int8, onnx)."""
import numpy as np
import pytest

from models.options import OptionError
from pipeline.export.formats import FORMATS, check_request
from tests.conftest import DET_FORMATS
from tests.conftest import DET_K as K
from tests.conftest import DET_SIZE as SIZE

TFLITE_FORMATS = [f for f in DET_FORMATS if f.startswith("tflite")]


def test_each_task_names_the_formats_it_takes():
    from pipeline.tasks import get_task

    det = get_task("detection")
    assert [s.name for s in check_request([], {}, det)] == list(DET_FORMATS)
    with pytest.raises(OptionError, match="cannot export a detection model"):
        check_request(["onnx_int8"], {}, det)
    with pytest.raises(OptionError, match="only io=float"):
        check_request(["tflite_int8"], {"io": "uint8"}, det)
    check_request(["tflite_fp16"], {}, get_task("classification"))


@pytest.mark.parametrize("fmt", TFLITE_FORMATS)
def test_tflite_has_builtin_nms_and_no_flex(det_files, fmt):
    from serving.tflite_inspect import op_names

    ops = op_names(det_files[fmt].read_bytes())
    assert "NON_MAX_SUPPRESSION_V5" in ops
    assert not [o for o in ops if o.startswith("CUSTOM") or "FLEX" in o], ops


def test_onnx_has_non_max_suppression(det_files):
    import onnx

    proto = onnx.load(str(det_files["onnx"]))
    onnx.checker.check_model(proto, full_check=True)
    assert any(n.op_type == "NonMaxSuppression" for n in proto.graph.node)


@pytest.mark.parametrize("fmt", DET_FORMATS)
def test_metadata_describes_the_detector(det_files, fmt):
    from serving.metadata import read_metadata

    meta = read_metadata(det_files[fmt])
    assert meta["contract"]["task"] == "detection" and meta["contract"]["labels"][0] == "circle"
    assert {k: (v["dtype"], v["shape"]) for k, v in meta["outputs"].items()} == {
        "boxes": ("float32", [1, K, 4]), "scores": ("float32", [1, K]),
        "classes": ("float32", [1, K]), "count": ("float32", [1])}   # float32: MediaPipe takes no int32
    block = meta["detection"]
    assert block["box_format"] == "rel_xyxy" and block["nms"]["max_detections"] == K
    assert block["nms"]["score_threshold"] == 0.2 and "anchor_spec" in block
    assert meta["quantization"]["activations"] == FORMATS[fmt].activations
    assert meta["quantization"]["weights"] == FORMATS[fmt].weights


@pytest.mark.parametrize("fmt", TFLITE_FORMATS)
def test_tflite_files_carry_standard_detector_metadata(det_files, fmt):
    """MediaPipe's ObjectDetector reads TFLITE_METADATA: the four outputs named as it looks them
    up, in the file's output order (found by the signature keys), the boxes' layout (left, top,
    right, bottom, normalized), the labels as TENSOR_VALUE_LABELS; serving still answers with
    int classes, and our sealed document is intact beside it."""
    import serving
    from serving.tflite_inspect import describe_outputs
    from tests.tflite_metadata import read_standard

    path = det_files[fmt]
    meta, files = read_standard(path)
    (sub,) = meta["subgraph_metadata"]
    (inp,) = sub["input_tensor_metadata"]
    assert inp["content"]["content_properties"]["color_space"] == "RGB"
    assert inp["process_units"][0]["options"] == {"mean": [0.0], "std": [1.0]}
    names = {"boxes": "location", "classes": "category", "scores": "score", "count": "number of detections"}
    keys = [r["key"] for r in describe_outputs(path.read_bytes())]
    outs = sub["output_tensor_metadata"]
    assert [o["name"] for o in outs] == [names[k] for k in keys]
    location = outs[keys.index("boxes")]["content"]
    props = location["content_properties"]   # RATIO is the schema's default: the JSON omits it
    assert (props["index"], props["type"], props.get("coordinate_type", "RATIO")) == (
        [0, 1, 2, 3], "BOUNDARIES", "RATIO")
    category = outs[keys.index("classes")]
    assert category["associated_files"][0]["type"] == "TENSOR_VALUE_LABELS"
    assert files["labels.txt"].decode().splitlines() == ["circle", "square", "triangle"]
    assert sub["output_tensor_groups"][0]["tensor_names"] == ["location", "category", "score"]
    runner = serving.load(path, manifest=None)
    ((boxes, scores, classes),) = runner.detect_batch(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    assert classes.dtype == np.int32 and len(boxes) == len(scores) == len(classes)


def test_fp16_and_dynamic_files_hold_their_promised_weights(det_files):
    """fp16: float16 weights (dequantized at load), about half the fp32 file; dynamic: int8 weights,
    float activations (no int8 activations: its convolutions take float inputs)."""
    from serving.tflite_inspect import tensor_types

    fp32, fp16, dyn = (det_files[f].read_bytes() for f in ("tflite_fp32", "tflite_fp16", "tflite_dynamic"))
    assert tensor_types(fp16).get("float16", 0) > 10 and "float16" not in tensor_types(fp32)
    assert 0.4 <= len(fp16) / len(fp32) <= 0.65, (len(fp16), len(fp32))
    assert tensor_types(dyn).get("int8", 0) > 10 and len(dyn) / len(fp32) <= 0.45, (len(dyn), len(fp32))


# ------------------------------------------------------------------ serving (Runner.detect)


def _scene(width, height, seed=0):
    """uint8 (height, width, 3): a few flat rectangles on noise."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        x0, y0 = rng.integers(0, width // 2), rng.integers(0, height // 2)
        img[y0:y0 + height // 3, x0:x0 + width // 3] = rng.integers(100, 255, 3)
    return img


def _png(img, path):
    from PIL import Image

    Image.fromarray(img).save(path)
    return path


def _reproduced(ref, got, iou=0.9, same_class=True):
    """Share of ref's boxes that got has (with the same class) at IoU >= iou."""
    from models.boxes import iou_numpy as box_iou

    if not len(ref.boxes):
        return 1.0
    hits = 0
    for box, cls in zip(ref.boxes, ref.classes):
        same = got.classes == cls if same_class else np.ones(len(got.classes), bool)
        hits += bool(same.any() and box_iou(box, got.boxes[same]).max() >= iou)
    return hits / len(ref.boxes)


@pytest.fixture(scope="session")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return [_png(_scene(w, h, i), root / f"s{i}.png")
            for i, (w, h) in enumerate([(64, 64), (96, 48), (50, 120), (200, 90)])]


# random weights give near-tied class scores, which int8 flips: its boxes are compared by place
@pytest.mark.parametrize("fmt,share,iou,same_class", [("tflite_fp32", 0.95, 0.9, True),
                                                      ("onnx", 0.95, 0.9, True),
                                                      ("tflite_fp16", 0.95, 0.9, True),
                                                      ("tflite_dynamic", 0.3, 0.5, False),
                                                      ("tflite_int8", 0.3, 0.5, False)])
def test_each_format_detects_like_keras(det_files, scenes, fmt, share, iou, same_class):
    import serving

    ref = serving.load(det_files["keras"], manifest=None).detect(scenes)
    got = serving.load(det_files[fmt], manifest=None).detect(scenes)
    for r, g in zip(ref, got):
        assert (g.width, g.height) == (r.width, r.height)
        assert 0 < len(g.boxes) <= K and g.boxes.shape[1] == 4 and len(g.labels) == len(g.scores)
        assert (g.boxes[:, 2:] >= g.boxes[:, :2]).all()
        assert (g.boxes[:, [0, 2]] <= g.width + 1e-3).all() and (g.boxes[:, [1, 3]] <= g.height + 1e-3).all()
        assert _reproduced(r, g, iou, same_class) >= share, (fmt, r.file)
    if fmt in ("tflite_fp32", "onnx"):
        np.testing.assert_allclose(np.sort(got[0].scores), np.sort(ref[0].scores), atol=1e-4)


@pytest.mark.parametrize("fmt", ["keras", "tflite_fp32", "onnx"])
@pytest.mark.parametrize("width,height", [(128, 64), (64, 192), (97, 41), (300, 200)])
def test_boxes_map_back_to_original_pixels(det_files, tmp_path, fmt, width, height):
    """detect() on a width x height image = the model's boxes on the image resized to the input
    (Pillow, as a device would) times (width, height): the resize is undone per axis."""
    from PIL import Image

    import serving

    big = _scene(width, height, 7)
    runner = serving.load(det_files[fmt], manifest=None)
    (got,) = runner.detect([_png(big, tmp_path / "b.png")])
    small = np.asarray(Image.fromarray(big).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    boxes, scores, _ = runner.detect_batch(small[None])[0]
    assert (got.width, got.height) == (width, height) and len(got.boxes) == len(boxes) > 0
    np.testing.assert_allclose(got.boxes, boxes * np.asarray([width, height, width, height]), atol=1e-3)
    np.testing.assert_allclose(got.scores, scores)
    assert got.boxes[:, [0, 2]].max() <= width + 1e-3 and got.boxes[:, [1, 3]].max() <= height + 1e-3


def test_tampered_detector_file_is_refused(det_files, tmp_path):
    import serving
    from serving.metadata import ArtifactError

    data = bytearray(det_files["tflite_fp32"].read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "model_fp32.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=str(bad)):
        serving.load(bad, manifest=None)


@pytest.mark.parametrize("fmt", ["tflite_fp32", "onnx"])
def test_detector_file_without_detection_metadata_is_refused(det_files, tmp_path, fmt):
    import onnx

    import serving
    from serving.metadata import ArtifactError, embed_onnx_metadata, embed_tflite_metadata, read_metadata

    path = det_files[fmt]
    meta = read_metadata(path)
    del meta["detection"], meta["outputs"]
    data = (embed_tflite_metadata(path.read_bytes(), meta) if fmt != "onnx"
            else embed_onnx_metadata(onnx.load(str(path)), meta))
    bare = tmp_path / path.name
    bare.write_bytes(data)
    with pytest.raises(ArtifactError, match="without detection metadata"):
        serving.load(bare, manifest=None)
    classifier = {**meta, "contract": {**meta["contract"], "task": "classification"}}
    data = (embed_tflite_metadata(path.read_bytes(), classifier) if fmt != "onnx"
            else embed_onnx_metadata(onnx.load(str(path)), classifier))
    bare.write_bytes(data)
    with pytest.raises(ArtifactError, match="four outputs"):
        serving.load(bare, manifest=None)


def test_serving_detect_cli_writes_json_and_annotated_images(det_files, scenes, tmp_path, capsys):
    import json

    from PIL import Image

    from serving.__main__ import main

    out = tmp_path / "out"
    rc = main(["detect", f"model={det_files['onnx']}", f"source={scenes[0].parent}", "score=0.25",
               "json=true", f"save={out}"])
    assert rc == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(scenes)
    row = next(r for r in lines if r["file"].endswith("s3.png"))
    assert (row["width"], row["height"]) == (200, 90)
    assert all(d["score"] >= 0.25 and d["label"] in ("circle", "square", "triangle")
               for d in row["detections"])
    assert Image.open(out / "s3.png").size == (200, 90)
    assert json.loads((out / "s3.json").read_text()) == row
    assert main(["detect", f"model={det_files['onnx']}", "source=/no/such"]) == 2


# ------------------------------------------------------------------ export + detection parity gate


def _export_cfg(run, *extra):
    from pipeline.config import load_config
    from pipeline.export import ExportConfig

    return load_config(ExportConfig, [f"model={run}", "verbose=false", *extra])


def test_detection_formats_are_checked_before_work(det_run):
    from pipeline.export import export

    with pytest.raises(OptionError, match="cannot export a detection model"):
        export(_export_cfg(det_run, "formats=onnx_int8", "out=" + str(det_run / "never")))
    assert not (det_run / "never").exists()


def test_judge_names_each_broken_threshold():
    from pipeline.export.config import GateConfig
    from pipeline.tasks.detection.parity import judge

    nums = {"map50": 0.80, "map50_keras": 0.85, "map50_drop": 0.05, "map": 0.6, "map_keras": 0.61,
            "map_drop": 0.01}
    assert judge(FORMATS["tflite_int8"], nums, GateConfig()) == [
        "mAP@.5 drop 5.00 points > 3.00 (Keras 0.8500, file 0.8000; gate.det_max_drop_int8=... sets it)"]
    assert len(judge(FORMATS["onnx"], nums, GateConfig(det_max_drop=0.005))) == 2
    assert judge(FORMATS["onnx"], nums, GateConfig(det_max_drop=0.06)) == []
    # dynamic range is lossy (int8 weights): the int8 bar; fp16 keeps the float one
    assert judge(FORMATS["tflite_dynamic"], nums, GateConfig(det_max_drop_int8=0.06)) == []
    assert len(judge(FORMATS["tflite_fp16"], nums, GateConfig(det_max_drop_int8=0.06))) == 1


def test_pre_nms_topk_keeps_only_the_best_anchors(det_run, tmp_path):
    """nms.pre_nms_topk = T (a contract setting, file-only): TOPK_V2 inside the file, and its
    detections are the decoder's numpy twin's on the raw outputs with every anchor outside the
    top T silenced."""
    from dataclasses import replace

    import serving
    from models import get_contract, load_model, set_contract
    from models.decoder import detect_numpy
    from pipeline.export.worker import convert_one
    from pipeline.tasks import get_task
    from serving.nms import nms as run_nms
    from serving.tflite_inspect import op_names

    det = load_model(det_run / "model.keras")
    c = get_contract(det)
    topk = 15
    nms = {**c.extra["nms"], "pre_nms_topk": topk}
    set_contract(det, replace(c, extra={**c.extra, "nms": nms}))
    (tmp_path / "scratch").mkdir()
    job = {"scratch": str(tmp_path / "scratch"), "staging": str(tmp_path),
           "source": {"model": "model.keras", "sha256": None, "config": None}, "calibration_info": None}
    spec = FORMATS["tflite_fp32"]
    path = convert_one(det, get_task("detection"), {"format": spec.name, "file": spec.filename({}),
                                                     "options": {}}, job, None)
    assert "TOPK_V2" in op_names(path.read_bytes())
    img = _scene(SIZE, SIZE, 3)
    raw = np.asarray(det.predict_on_batch(img[None].astype(np.float32)))[0]   # (A, 4 + C + 1)
    logits = raw[:, 4:] - raw[:, 4:].max(1, keepdims=True)
    score = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True))[:, 1:].max(1)
    assert (score >= nms["score_threshold"]).sum() > topk   # the top-k really cuts candidates here
    masked = raw.copy()
    masked[np.argsort(-score)[topk:], 5:] = -1e4            # background wins outside the top T
    boxes, scores, classes, n = detect_numpy(masked, c.detection, run_nms)   # all anchors, no top-k
    (got,) = serving.load(path, manifest=None).detect_batch(img[None])
    np.testing.assert_allclose(got[0], boxes[:n], atol=1e-5)
    np.testing.assert_allclose(got[1], scores[:n], atol=1e-5)
    np.testing.assert_array_equal(got[2], classes[:n])


def test_raw_detector_hook_converts_without_nms(det_run, tmp_path):
    """convert(..., task=RawGraph()), bench/detection_latency.py's hook: the same recipe on the raw
    detector, one (1, A, 4 + C + 1) float output and no NMS op."""
    from models import anchors_of, get_contract, load_model
    from pipeline.export.tflite import convert
    from pipeline.tasks.detection.export import RawGraph
    from serving.tflite_inspect import describe_outputs, op_names

    det = load_model(det_run / "model.keras")
    data = convert(det, FORMATS["tflite_fp32"], {}, calibration=None, workdir=tmp_path, task=RawGraph())
    assert "NON_MAX_SUPPRESSION_V5" not in op_names(data)
    (out,) = describe_outputs(data)
    assert out["shape"] == [1, len(anchors_of(get_contract(det))), 4 + 3 + 1] and out["dtype"] == "float32"
