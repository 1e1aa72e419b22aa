"""What the demo's AppTest files share: app.py's path, the samples, tiny image bytes, and the
AppTest helpers (the `app` fixture itself is in conftest.py)."""
from __future__ import annotations

import io
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"
SAMPLES = APP.parent / "samples"


def png(size=(40, 30), color=(200, 30, 30), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def upload_images(at: AppTest, *files: tuple[str, bytes]) -> AppTest:
    at.file_uploader(key="images").set_value([(n, d, "image/png") for n, d in files])
    return at.run()
