"""What a task is: everything `train`, `export`, `report` and the main job need to know about a
kind of model, in one object (the way Ultralytics keys trainer/validator/predictor by task and
KerasHub puts a Task on a Backbone).

The shared machinery calls these methods and never asks which task it runs:
  pipeline.train        load_data, check_model, recipe, build_model, tf_dataset, loss_and_metrics,
                        epoch_callbacks, evaluate, write_plots, run_metrics, artifacts, headline
  pipeline.export       formats, check_request, gate_images, reference (worker), export_graph and
                        check_file (converters), output_metadata and standard_outputs (worker),
                        parity, summary_columns
  pipeline.report       report_row, report_columns, report_text, plot_metric, close_to_source
A task is looked up by name from the model's data contract (`contract.task`) or the training
config (`task=`): pipeline.tasks.get_task. Its serving side is serving.tasks.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from models.options import OptionError
from pipeline.data.base import DataError

# (header, width, format, value(row, parity)) of one column of the export summary
SummaryColumn = tuple[str, int, str, Callable[[dict, dict], Any]]
# (header, right-aligned, cell(row)) of one column of report.md's table
ReportColumn = tuple[str, bool, Callable[[dict], str]]


class Task(ABC):
    name: ClassVar[str]
    metric: ClassVar[str]            # metrics.json's headline key: test_<metric>, val_<metric>
    monitor: ClassVar[str]           # the val metric that picks the best checkpoint
    formats: ClassVar[tuple[str, ...]]   # the export formats (pipeline.export.formats) it takes
    integer_io: ClassVar[bool]       # whether tflite_int8 may take io=uint8|int8
    int8_repair: ClassVar[bool] = False   # whether a failing int8 file is diagnosed and repaired
                                          # (pipeline.export.repair; its gate runs in the worker)
    plot_metric: ClassVar[tuple[str, str]]   # (row key, axis label) of report's Pareto plot
    summary_columns: ClassVar[tuple[SummaryColumn, ...]]
    report_columns: ClassVar[tuple[ReportColumn, ...]]
    report_text: ClassVar[str]       # what report.md's numbers are ({threads} {runs} {warmup})

    # ------------------------------------------------------------------ training

    @abstractmethod
    def check_model(self, name: str) -> None:
        """OptionError when model `name` cannot be trained for this task."""

    @abstractmethod
    def recipe(self, cfg: Any) -> tuple[Any, str | None]:
        """model=auto: (cfg with the task's defaults for the data, the line to print)."""

    @abstractmethod
    def load_data(self, data_cfg: Any, shape: tuple[int, int, int]) -> Any:
        """The dataset (train/val/test splits, class_names, summary()) at the model's input."""

    def check_training_data(self, data: Any) -> None:
        """DataError when the loaded data cannot train this task's model."""
        if len(data.train) == 0:
            raise DataError(f"data={data.source}: the training split is empty")

    @abstractmethod
    def build_model(self, name: str, **kwargs: Any) -> Any:
        """A Keras model of this task with its contract (models.create_model / create_detector)."""

    @abstractmethod
    def tf_dataset(self, split: Any, *, cfg: Any, contract: Any, training: bool) -> Any:
        """tf.data batches of (inputs, targets) for Keras fit; None for an empty split."""

    @abstractmethod
    def loss_and_metrics(self, cfg: Any, contract: Any, k: Any) -> tuple[Any, list]:
        """(loss, Keras metrics) to compile the model with."""

    def epoch_callbacks(self, k: Any, data: Any, shape: tuple[int, ...]) -> list:
        """Callbacks that add the monitored val metric to the epoch logs (before they are read)."""
        return []

    def finetune_supported(self) -> None:  # noqa: B027 (most tasks fine-tune: nothing to refuse)
        """OptionError when fine-tuning (pipeline.finetune) cannot start from this task's models."""

    @abstractmethod
    def preview_grid(self, data: Any, augment: Any, rows: int, cols: int, seed: int, out: Any) -> str:
        """`augment-preview`: a PNG of training images and augmented versions (with the task's
        targets drawn); returns what it shows in a few words."""

    @abstractmethod
    def evaluate(self, model: Any, data: Any, tf_data: Callable[[str], Any]) -> tuple[dict, dict]:
        """(metrics.json entries for every split, what write_plots needs)."""

    @abstractmethod
    def write_plots(self, paths: Any, metrics: dict, shown: dict, class_names: Sequence[str],
                    title: str, contract: Any) -> None:
        """The task's own plots in the run dir (curves.png is the trainer's)."""

    def run_metrics(self, contract: Any) -> dict[str, Any]:
        """Extra metrics.json entries read from the trained model's contract."""
        return {}

    def artifacts(self, paths: Any) -> dict[str, Any]:
        """Extra files of the run dir, by name."""
        return {}

    def headline(self, metrics: dict[str, Any]) -> str:
        return f"test {self.metric} {metrics[f'test_{self.metric}']:.4f}"

    # ------------------------------------------------------------------ export

    def check_request(self, formats: Sequence[Any], given: dict[str, Any]) -> None:
        """OptionError when a requested format or option cannot export this task's model."""
        wrong = [s.name for s in formats if s.name not in self.formats]
        if wrong:
            raise OptionError(f"formats: {', '.join(wrong)} cannot export a {self.name} model "
                              f"(formats for {self.name}: {', '.join(self.formats)})")
        io = given.get("io")
        if io not in (None, "float") and not self.integer_io:
            raise OptionError(f"io={io}: a {self.name} file's outputs stay float; only io=float")

    @abstractmethod
    def gate_images(self, data: Any, idx: np.ndarray, contract: Any, which: str
                    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Images `idx` of split `which` ("train"/"test") for calibration or the gate: (uint8
        (n, H, W, C) at the model input, int labels (n,) or zeros, what parity() needs besides)."""

    @abstractmethod
    def reference(self, model: Any, images: np.ndarray) -> np.ndarray:
        """The Keras model's answers on the gate's images, as one array (in the export worker)."""

    def unpack_reference(self, array: np.ndarray) -> Any:
        """reference()'s array back in the form parity() takes."""
        return array

    def export_graph(self, model: Any) -> tuple[Any, list | None]:
        """(the Keras graph each file is converted from, a fixed input signature or None)."""
        return model, None

    @abstractmethod
    def check_file(self, family: str, file: Any, spec: Any, options: dict[str, Any]) -> list[str]:
        """Problems of a converted file (family "tflite": bytes, "onnx": the ModelProto) that its
        name or the task promises otherwise; [] when none."""

    @abstractmethod
    def standard_outputs(self, contract: Any) -> list[dict[str, Any]]:
        """What a .tflite's outputs are in the standard TFLite metadata MediaPipe Tasks read
        (pipeline.export.standard_metadata writes it): per output {"key": its signature output
        key (None: the only output), "name", "description", "kind": probabilities | boxes
        (with "box_index") | categories | scores | count}."""

    def output_metadata(self, records: list[dict[str, Any]], where: str, contract: Any
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the metadata's "output" record, extra metadata blocks) from the file's outputs."""
        return records[0], {}

    @abstractmethod
    def parity(self, path: Any, spec: Any, images: Any, reference: Any, gate: Any) -> dict[str, Any]:
        """Run the file through serving on the gate's images and judge it: the manifest's parity."""

    # ------------------------------------------------------------------ report

    @abstractmethod
    def report_row(self, art: dict[str, Any], bench: dict[str, Any]) -> dict[str, Any]:
        """One report row from a manifest entry and its serving benchmark."""

    def keras_accuracy(self, rows: list[dict[str, Any]]) -> float | None:
        """The Keras model's accuracy as the gate measured it beside the files (None: the task
        has no accuracy)."""
        return None

    @abstractmethod
    def close_to_source(self, row: dict[str, Any], keras_accuracy: float | None) -> bool:
        """Whether a file keeps close enough to Keras to be recommended."""

    @abstractmethod
    def recommend_why(self, row: dict[str, Any]) -> str:
        """How close_to_source judged the recommended file, for the report's sentence."""

    @abstractmethod
    def keras_row(self, row: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The .keras benchmark row completed with the Keras model's own quality figures (read
        from the gate's numbers in the files' rows)."""
