"""What an annotation folder hands the readers (pipeline.tasks.detection.annotations) is untrusted:
these checks refuse a hostile or careless one in one line before anything is read whole or
allocated. Files and class lists are bounded, an image path must stay inside the data folder (and
the refusal never says whether a file outside exists), ids and boxes must have the types COCO
gives them."""
from __future__ import annotations

import os
from pathlib import Path

from pipeline.data.base import DataError

# bounds checked before reading or allocating (a hostile folder must not exhaust memory)
MAX_CLASSES = 10_000                # LVIS has 1,203; a class id above this is a typo or an attack
MAX_NAME = 200                      # characters in a class name
MAX_TEXT_BYTES = 2 << 30            # an annotation file (COCO train2017's JSON is 448 MB)
MAX_YAML_BYTES = 1 << 20            # data.yaml


def read_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(f"{path}: {size / 1e6:.1f} MB is over the {limit / 1e6:.0f} MB limit for "
                            "this file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: unreadable label file ({type(e).__name__}: {e})") from None


def within(root: Path, path: Path) -> bool:
    """Whether `path` stays inside `root` once `..` and absolute parts are applied (lexically: a
    symlink the folder's owner placed inside it is followed, as any image is)."""
    base = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([base, os.path.normpath(os.path.abspath(path))]) == base


def inside(root: Path, path: Path, where: str, given: object) -> Path:
    """`path` if it stays inside the data folder, else a DataError that says nothing of what is
    outside (not whether it exists)."""
    if not within(root, path):
        raise DataError(f"{where}: image path {str(given)!r} is outside the data folder {root} "
                        "(refused: paths must be relative, inside the data folder)")
    return path


def is_id(value: object) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def is_num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def class_name(where: str, i: int, name: object) -> str:
    if not isinstance(name, (str, int, float)) or isinstance(name, bool) or len(str(name)) > MAX_NAME:
        raise DataError(f"{where}: class {i} must be a short name (text of at most {MAX_NAME} "
                        f"characters), got a {type(name).__name__}")
    return str(name)


def coco_tables(path: Path, data: object) -> tuple[list, list, list]:
    """images, annotations, categories of a COCO file, each entry checked for its type."""
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise DataError(f"{path}: not a COCO instances file (needs images and categories)")
    images, anns, cats = data["images"], data.get("annotations", []), data["categories"]
    for key, table in (("images", images), ("annotations", anns), ("categories", cats)):
        if not isinstance(table, list) or not all(isinstance(e, dict) for e in table):
            raise DataError(f"{path}: {key} must be a list of objects")
    if len(cats) > MAX_CLASSES:
        raise DataError(f"{path}: {len(cats)} categories is over the limit of {MAX_CLASSES}")
    seen: set = set()
    for c in cats:
        if not isinstance(c.get("id"), int) or isinstance(c.get("id"), bool):
            raise DataError(f"{path}: category id must be an integer, got {str(c.get('id'))[:40]}")
        if c["id"] in seen:
            raise DataError(f"{path}: duplicate category id {c['id']}")
        seen.add(c["id"])
        if "name" not in c:
            raise DataError(f"{path}: category {c['id']} needs a name")
        class_name(f"{path}: categories", c["id"], c["name"])
    seen = set()
    for im in images:
        if not is_id(im.get("id")):
            raise DataError(f"{path}: image id must be an integer or text, got {str(im.get('id'))[:40]}")
        if im["id"] in seen:
            raise DataError(f"{path}: duplicate image id {im['id']}")
        seen.add(im["id"])
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise DataError(f"{path}: image id {im['id']} needs a file_name (text)")
    return images, anns, cats
