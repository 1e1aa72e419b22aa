"""`serving detect save=` (issue 20, cause 8): never writes over an input, and two inputs with
one name in different folders get two outputs."""
import json

import numpy as np
from PIL import Image

from serving.__main__ import main


def _photos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        Image.fromarray(np.full((40, 48, 3), 30 * i, np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_detect_save_never_overwrites_an_input(det_run, tmp_path, capsys):
    (photo,) = _photos(tmp_path / "photos", ["photo.png"])
    before, mtime = photo.read_bytes(), photo.stat().st_mtime_ns
    code = main(["detect", f"model={det_run / 'model.keras'}", f"source={photo.parent}",
                 f"save={photo.parent}"])
    assert photo.read_bytes() == before and photo.stat().st_mtime_ns == mtime   # untouched
    assert code == 2 and "would write over the input" in capsys.readouterr().err


def test_detect_save_gives_same_named_inputs_their_own_outputs(det_run, tmp_path):
    a = _photos(tmp_path / "src" / "a", ["photo.png"])[0]
    b = _photos(tmp_path / "src" / "b", ["photo.png", "other.jpg"])[0]
    out = tmp_path / "out"
    assert main(["detect", f"model={det_run / 'model.keras'}", f"source={tmp_path / 'src'}",
                 f"save={out}", "json=true"]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["other.json", "other.png", "photo-2.json", "photo-2.png", "photo.json", "photo.png"]
    files = {json.loads((out / f"{s}.json").read_text())["file"] for s in ("photo", "photo-2")}
    assert files == {str(a), str(b)}
