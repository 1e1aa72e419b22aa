"""Demo limits and where the demo looks for runs.

The runs root is, first match wins: `streamlit run app.py -- --runs DIR`, the environment
variable RUNS_ENV, then `runs/` beside app.py (where `make run` writes).
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

RUNS_ENV = "CNN_DEMO_RUNS"

MAX_IMAGE_BYTES = 20 * 1024 * 1024      # one uploaded image file
MAX_IMAGE_PIXELS = 40_000_000           # width x height, checked from the header before decoding
MAX_IMAGES = 24                         # images classified per page run
MAX_MODEL_BYTES = 200 * 1024 * 1024     # one uploaded .tflite/.onnx file
MAX_MANIFEST_BYTES = 1024 * 1024
MODEL_SUFFIXES = (".tflite", ".onnx")   # what the demo runs: exported files only
IMAGE_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
TOPK = 5


class DemoError(ValueError):
    """A bad demo input (upload, argument, run folder); str() is one line naming it."""


# what a user can get wrong at the model boundary: ArtifactError/DemoError/ImageError are
# ValueErrors; LiteRT reports some broken files as RuntimeError; OSError for unreadable files
LOAD_ERRORS = (ValueError, RuntimeError, OSError)


# what turns text into markup in Streamlit's Markdown (st.markdown, captions, st.error, st.table
# cells): links and images ([), HTML and autolinks (<), Streamlit's :color[...] directives ([),
# $LaTeX$, emphasis, code, tables, headings. The rest (. - > ( ) ! :) has no effect once these are
# escaped, and stays unescaped so numbers and file names read the same in the page's source; so
# does an underscore inside a word (model_fp32), which CommonMark never reads as emphasis.
_MARKDOWN = frozenset("\\`*_[]<$~|#")


def plain(text: object) -> str:
    """`text` as itself in any Markdown the page renders: each Markdown character is
    backslash-escaped (CommonMark drops the backslash again), newlines become spaces. Labels,
    file and image names come from model files and uploads: a label such as
    ![t](http://host/x.png) must never become an image every visitor's browser fetches."""
    text = " ".join(str(text).splitlines())
    return "".join("\\" + c if c in _MARKDOWN and not (c == "_" and _inside_word(text, i)) else c
                   for i, c in enumerate(text))


def _inside_word(text: str, i: int) -> bool:
    return 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def runs_root(argv: Sequence[str], environ: Mapping[str, str], default: str | os.PathLike) -> Path:
    """The runs root from `--runs DIR` / `--runs=DIR` in argv, else environ[RUNS_ENV], else
    `default`. Any other argument is a DemoError (a typo must not silently fall back)."""
    chosen: str | None = None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--runs":
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise DemoError("--runs needs a folder: streamlit run app.py -- --runs DIR")
            chosen, i = args[i + 1], i + 2
        elif arg.startswith("--runs="):
            chosen, i = arg.split("=", 1)[1], i + 1
        else:
            raise DemoError(f"unknown argument {arg!r}; the demo takes only --runs DIR "
                            "(streamlit run app.py -- --runs DIR)")
    if chosen is None:
        chosen = environ.get(RUNS_ENV) or None
    return Path(chosen if chosen is not None else default).expanduser()
