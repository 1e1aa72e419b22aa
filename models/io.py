"""Save and load `.keras` files that carry their DataContract (as contract.json in the zip).

Keras' loader ignores the extra zip entry, so the file stays a normal `.keras` file.
Writes are atomic: a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

from models.atomic import atomic_path
from models.contract import ContractError, DataContract
from models.factory import get_contract, set_contract

CONTRACT_ENTRY = "contract.json"
MAX_CONTRACT_BYTES = 1 << 20   # a contract is a few KB; a bigger entry is checked before inflating


class ModelFileError(ValueError):
    """A model file that is missing, corrupt or lacks what the pipeline needs."""


def save_model(model: Any, path: str | os.PathLike, contract: DataContract | None = None) -> Path:

    contract = contract or get_contract(model)
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: model files must end in .keras")
    try:
        with atomic_path(path) as tmp:
            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(CONTRACT_ENTRY, contract.to_json())
    except OSError as e:   # a full disk, a quota: one line; atomic_path left nothing behind
        raise ModelFileError(f"{path}: cannot save the model ({e.strerror or e})") from None
    return path


def read_contract(path: str | os.PathLike) -> DataContract:
    """The contract stored in a .keras file, without loading Keras."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with zipfile.ZipFile(path) as z:
            if CONTRACT_ENTRY not in z.namelist():
                raise ModelFileError(f"{path}: has no {CONTRACT_ENTRY} (not saved by this "
                                     "pipeline); save it with models.save_model")
            size = z.getinfo(CONTRACT_ENTRY).file_size   # as the zip declares it ...
            if size > MAX_CONTRACT_BYTES:
                raise ModelFileError(f"{path}: {CONTRACT_ENTRY} inflates to {size} bytes, which is "
                                     f"over the limit of {MAX_CONTRACT_BYTES}")
            with z.open(CONTRACT_ENTRY) as f:   # ... and as it inflates (a lying header)
                text = f.read(MAX_CONTRACT_BYTES + 1)
            if len(text) > MAX_CONTRACT_BYTES:
                raise ModelFileError(f"{path}: {CONTRACT_ENTRY} is over the limit of "
                                     f"{MAX_CONTRACT_BYTES} bytes")
            return DataContract.from_json(text)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise ModelFileError(f"{path}: not a .keras file (not a readable zip archive: {e})") from None
    except ContractError as e:
        raise ModelFileError(f"{path}: {e}") from None


def load_model(path: str | os.PathLike, *, compile: bool = False) -> Any:
    """Load a .keras model in safe mode (no lambda/code deserialisation) with its contract."""
    import keras

    contract = read_contract(path)
    try:
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # keras raises many types for a damaged archive
        raise ModelFileError(f"{path}: cannot load model: {type(e).__name__}: {e}") from None
    return set_contract(model, contract)
