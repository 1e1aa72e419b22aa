"""Standard TFLite Model Metadata: what MediaPipe Tasks, the TFLite Task Library and Android
Studio's ML binding read from a .tflite ("Adding metadata to TensorFlow Lite models", the
TFLITE_METADATA flatbuffer of tflite-support's metadata_schema.fbs, plus its associated files
zipped after the model).

Written with tflite-support's own writer classes (metadata_info, MetadataPopulator), in the
training-side export worker only: the package pins protobuf<4, so it is installed with
`--no-deps` (Makefile) and imported as `tensorflow_lite_support.metadata...` (NOT
`tflite_support`, whose __init__ loads protobuf-3 task code); the edge install never needs it,
since our own JSON document (serving.metadata) is what serving reads.

The shared part is here: the model-level record (name, version, description, author from the
run), the image input (NormalizationOptions matching the in-graph normalization: the models take
0..255 pixels, so mean 0 and std 1 for a float input; nothing for a uint8 input, whose pixels go
in as they are), each output from the task's declaration (Task.standard_outputs: which output,
found by its signature key, is which kind) and the populate step. Kinds, as the TFLite Task
Library / MediaPipe read them:
  probabilities   a classifier's scores, the labels file TENSOR_AXIS_LABELS (one line a class);
  boxes           BoundingBoxProperties BOUNDARIES + RATIO, `box_index`: where left, top, right,
                  bottom sit in a box;
  categories      class ids, the labels file TENSOR_VALUE_LABELS (line i names class id i);
  scores, count   a detector's scores and number of valid rows (grouped with boxes and
                  categories as "detection_result", as tflite-support's object_detector writer does).

Order matters: the populator repacks the flatbuffer and appends the label zip, so our JSON entry
is embedded first (unsealed), this runs next, and the content seal comes last
(pipeline.export.tflite.embed), so the digest covers every byte, the zip included.
"""
from __future__ import annotations

from typing import Any

from pipeline.export.errors import ExportError, first_line

LABELS_FILE = "labels.txt"


def schemas() -> tuple[Any, Any]:
    """(metadata_schema_py_generated, metadata_info) of tflite-support."""
    try:
        from tensorflow_lite_support.metadata import metadata_schema_py_generated as fb
        from tensorflow_lite_support.metadata.python.metadata_writers import metadata_info
    except ImportError as e:
        raise ExportError(f"standard TFLite metadata needs tflite-support in this venv "
                          f"(make setup installs it with --no-deps): {first_line(e)}") from None
    return fb, metadata_info


def labels_file(labels: Any) -> bytes:
    return "".join(f"{label}\n" for label in labels).encode("utf-8")


def output_positions(data: bytes) -> dict[str, int]:
    """The signature's output keys (the export graph's output names: "probs", "boxes", ...) ->
    position among the file's outputs. Converters rename output tensors and reorder them; the
    signature keeps the graph's names."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=data)
    position = {d["index"]: i for i, d in enumerate(interp.get_output_details())}
    sigs = interp.get_signature_list()
    if len(sigs) != 1:
        return {}
    runner = interp.get_signature_runner(next(iter(sigs)))
    return {key: position[d["index"]] for key, d in runner.get_output_details().items()}


def _tensor_type(data: bytes, which: str) -> int:
    from ai_edge_litert import schema_py_generated as schema

    sub = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    index = sub.Inputs(0) if which == "input" else sub.Outputs(0)
    return sub.Tensors(index).Type()


def output_type(data: bytes) -> int:
    """The first output's TensorType (the schema's enum: FLOAT32 = 0, UINT8 = 3, INT8 = 9)."""
    return _tensor_type(data, "output")


def image_input(data: bytes, contract: Any) -> Any:
    """The image input's TensorMetadataT: RGB or grayscale, 0..255 pixels. A float input gets
    NormalizationOptions mean 0 / std 1 (the graph normalizes inside: models.contract), a uint8
    one none (a camera frame's pixels go straight in: quantization scale 1, zero point 0)."""
    fb, info = schemas()
    from tensorflow_lite_support.metadata import schema_py_generated as schema

    dtype = _tensor_type(data, "input")
    uint8 = dtype == schema.TensorType.UINT8
    channels = contract.input_shape[-1]
    md = info.InputImageTensorMd(
        name="image", description=f"{'x'.join(map(str, contract.input_shape))} image, pixels 0..255",
        norm_mean=None if uint8 else [0.0], norm_std=None if uint8 else [1.0],
        color_space_type=fb.ColorSpaceType.RGB if channels == 3 else fb.ColorSpaceType.GRAYSCALE,
        tensor_type=schema.TensorType.UINT8 if uint8 else schema.TensorType.FLOAT32)
    return md.create_metadata()


def general(contract: Any, fmt: str, source: dict[str, Any], task: str) -> Any:
    """The model-level record: name, description, version and author from the run."""
    _, info = schemas()
    from serving.metadata import PRODUCER, PRODUCER_VERSION

    model = source.get("model") or "model"
    labels = ", ".join(map(str, contract.labels[:8])) + (", ..." if len(contract.labels) > 8 else "")
    return info.GeneralMd(
        name=f"{model} ({fmt})",
        description=f"{task}: {len(contract.labels)} classes ({labels}); exported from {model} "
                    f"(sha256 {str(source.get('sha256') or '-')[:12]}) as {fmt}",
        version=str(source.get("sha256") or "")[:12] or None,
        author=f"{PRODUCER} {PRODUCER_VERSION}").create_metadata()


CONTENT_DIM = 2   # the dimension of a detector output the content describes (tflite-support's writer)


def output_tensors(data: bytes, declared: list[dict[str, Any]], labels: Any
                   ) -> tuple[list[Any], list[Any], dict[str, bytes]]:
    """(TensorMetadataT per output in the file's order, tensor groups, {file name: bytes}) from
    a task's declaration (Task.standard_outputs)."""
    fb, info = schemas()
    positions = output_positions(data) if any(d["key"] for d in declared) else {None: 0}
    if set(positions) != {d["key"] for d in declared}:
        raise ExportError(f"standard TFLite metadata: the file's outputs are {sorted(map(str, positions))}, "
                          f"the task describes {sorted(str(d['key']) for d in declared)}")
    label_file = info.LabelFileMd(LABELS_FILE)
    tensors: list[Any] = [None] * len(positions)
    for d in declared:
        kind, name, description = d["kind"], d["name"], d["description"]
        if kind == "probabilities":
            md = info.ClassificationTensorMd(name=name, description=description, label_files=[label_file],
                                             tensor_type=output_type(data)).create_metadata()
        elif kind == "categories":
            md = info.CategoryTensorMd(name=name, description=description,
                                       label_files=[label_file]).create_metadata()
            md.associatedFiles[0].type = fb.AssociatedFileType.TENSOR_VALUE_LABELS
        elif kind == "scores":
            md = info.ClassificationTensorMd(name=name, description=description).create_metadata()
        elif kind in ("boxes", "count"):
            md = info.TensorMd(name=name, description=description).create_metadata()
        else:
            raise ExportError(f"standard TFLite metadata: unknown output kind {kind!r}")
        if kind == "boxes":
            props = fb.BoundingBoxPropertiesT()
            props.index, props.type = list(d["box_index"]), fb.BoundingBoxType.BOUNDARIES
            props.coordinateType = fb.CoordinateType.RATIO
            md.content.contentPropertiesType = fb.ContentProperties.BoundingBoxProperties
            md.content.contentProperties = props
        if kind in ("boxes", "categories", "scores"):
            md.content.range = fb.ValueRangeT()
            md.content.range.min = md.content.range.max = CONTENT_DIM
        tensors[positions[d["key"]]] = md
    groups = []
    grouped = [d["name"] for kind in ("boxes", "categories", "scores") for d in declared if d["kind"] == kind]
    if len(grouped) == 3:
        group = fb.TensorGroupT()
        group.name, group.tensorNames = "detection_result", grouped
        groups.append(group)
    return tensors, groups, {LABELS_FILE: labels_file(labels)}


def populate(data: bytes, model_md: Any, input_md: Any, outputs: list[Any], groups: list[Any],
             files: dict[str, bytes]) -> bytes:
    """`data` with the TFLITE_METADATA entry and the associated files (tflite-support's
    MetadataPopulator, which validates them against the model's tensors)."""
    import flatbuffers

    fb, _ = schemas()
    from tensorflow_lite_support.metadata.python import metadata as md

    sub = fb.SubGraphMetadataT()
    sub.inputTensorMetadata = [input_md]
    sub.outputTensorMetadata = outputs
    sub.outputTensorGroups = groups or None
    model_md.subgraphMetadata = [sub]
    b = flatbuffers.Builder(0)
    b.Finish(model_md.Pack(b), md.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    try:
        populator = md.MetadataPopulator.with_model_buffer(bytearray(data))
        populator.load_metadata_buffer(b.Output())
        populator.load_associated_file_buffers(files)
        populator.populate()
        return bytes(populator.get_model_buffer())
    except (ValueError, OSError) as e:
        raise ExportError(f"standard TFLite metadata could not be written: {first_line(e)}") from None


def write(data: bytes, contract: Any, fmt: str, source: dict[str, Any], task: Any) -> bytes:
    """`data` with the standard metadata of a `task` (pipeline.tasks Task) model written in."""
    tensors, groups, files = output_tensors(data, task.standard_outputs(contract), contract.labels)
    return populate(data, general(contract, fmt, source, task.name), image_input(data, contract),
                    tensors, groups, files)
