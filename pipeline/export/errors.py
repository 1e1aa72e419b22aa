"""Errors of the export stage; each message is one line for the user (the CLI prints it)."""
from __future__ import annotations


class ExportError(ValueError):
    """A conversion or export step that failed; nothing of the run is left on disk."""


class GateError(ExportError):
    """The parity gate failed; `failures` holds one line per failing artifact, `failed` their
    records (reasons, parity numbers, an int8 file's diagnosis and repair attempts)."""

    def __init__(self, failures: list[str], failed: list[dict] | None = None) -> None:
        self.failures, self.failed = list(failures), list(failed or [])
        super().__init__("parity gate failed, no artifact written:\n  " + "\n  ".join(self.failures))


class IncompleteExportError(GateError):
    """Files the user asked for by name neither passed nor were repaired; the others WERE
    published (`result`: the pipeline.export.ExportResult)."""

    def __init__(self, failures: list[str], result: object) -> None:
        self.failures, self.result = list(failures), result
        n = len({line.split(": ", 1)[0] for line in self.failures})
        ValueError.__init__(self, f"{n} requested file(s) failed and were not published "
                            f"(the {len(result.artifacts)} that passed are in {result.out_dir}):\n  "  # type: ignore[attr-defined]
                            + "\n  ".join(self.failures))


def first_line(e: BaseException) -> str:
    """The most useful line of a converter's (often multi-page) error message."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    # TF's converter errors carry the useful "error: ..." line somewhere in the middle
    useful = [s for s in lines if "error:" in s.lower()] or lines or [type(e).__name__]
    return useful[0][:300]
