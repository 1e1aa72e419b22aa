"""A tiny classifier with one deliberately damaged layer, for the int8 diagnosis/repair tests.

A small conv net is trained on `digits` (16x16, a few seconds), then the weight range of ONE
layer is blown up without changing what the float model computes: conv1 gets a 9th channel that
is dead (zero kernel, negative bias: ReLU gives exactly 0 on every image) and conv2 reads it
with weights 1000x its largest one. 0 x 1000 = 0, so Keras' answers are exactly the trained
net's; but every int8 scale of conv2's kernel (per output channel,
set by its largest |w|) becomes ~1000x too coarse and its real weights all round to 0. The
int8 file loses conv2, the diagnosis must rank it first, and keeping conv2 float repairs it.
"""
from __future__ import annotations

from pathlib import Path

DAMAGED = "conv2"   # the Keras layer whose weight range is blown up
SIZE = 16


def damaged_run(run: Path) -> Path:
    """A run dir (model.keras + config.yaml on digits) of the damaged net; returns it."""
    import keras
    import numpy as np

    from models import save_model, set_contract
    from models.contract import DataContract
    from pipeline.config import save_config
    from pipeline.data import DataConfig, load_dataset

    keras.utils.set_random_seed(0)
    ds = load_dataset(DataConfig(source="digits"), image_size=(SIZE, SIZE), channels=1)
    model = _net(keras, 8)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(ds.train.images.astype("float32"), ds.train.labels, epochs=8, batch_size=32, verbose=0)

    damaged = _net(keras, 9)                            # conv1 with a 9th, dead channel
    for layer in model.layers:
        damaged.get_layer(layer.name).set_weights(layer.get_weights()) if layer.name not in (
            "conv1", DAMAGED) else None
    k1, b1 = model.get_layer("conv1").get_weights()     # (3, 3, 1, 8), (8,)
    k2, b2 = model.get_layer(DAMAGED).get_weights()     # (3, 3, 8, 16), (16,)
    k1 = np.concatenate([k1, np.zeros_like(k1[..., :1])], -1)
    b1 = np.concatenate([b1, [-1.0]]).astype(np.float32)
    k2 = np.concatenate([k2, np.full_like(k2[:, :, :1], 1000.0 * np.abs(k2).max())], 2)
    damaged.get_layer("conv1").set_weights([k1, b1])
    damaged.get_layer(DAMAGED).set_weights([k2, b2])
    model = damaged
    contract = DataContract(input_shape=(SIZE, SIZE, 1), labels=ds.class_names, mean=(0.0,), std=(1.0,))
    run.mkdir(parents=True, exist_ok=True)
    save_model(set_contract(model, contract), run / "model.keras")
    save_config({"data": {"source": "digits"}}, run / "config.yaml")
    return run


def _net(keras, conv1_channels: int):
    inp = keras.Input((SIZE, SIZE, 1), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="normalize")(inp)
    x = keras.layers.Conv2D(conv1_channels, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=DAMAGED)(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inp, probs)
