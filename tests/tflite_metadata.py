"""Read the standard TFLite Model Metadata back with tflite-support's own reader
(MetadataDisplayer), for the tests: the JSON of the TFLITE_METADATA flatbuffer and the files
zipped in the model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_standard(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    from tensorflow_lite_support.metadata.python import metadata

    shown = metadata.MetadataDisplayer.with_model_buffer(Path(path).read_bytes())
    files = {name: shown.get_associated_file_buffer(name) for name in shown.get_packed_associated_file_list()}
    return json.loads(shown.get_metadata_json()), files
