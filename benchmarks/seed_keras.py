"""The seed's own Keras code (the classic Keras MNIST convnet), reading the local MNIST IDX files.

    pip install -e ".[bench]"                       # TensorFlow/Keras: for this benchmark only
    python benchmarks/seed_keras.py --mirror ../shared/datasets/mnist

The model and recipe are written as the seed writes them; only the loading differs (the seed calls
`mnist.load_data()`, which downloads; here the same four files come from a local directory). The
last line printed is JSON: fit seconds, seconds per epoch, test accuracy.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally .gz) as a uint8 array: 2 zero bytes, type, ndim, big-endian sizes."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", count=ndim, offset=4)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(mirror: Path) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """keras.datasets.mnist.load_data(), from `mirror` instead of the network."""

    def split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = (sorted(mirror.glob(f"{prefix}-{kind}-idx*"))[0] for kind in ("images", "labels"))
        return read_idx(images), read_idx(labels)

    return split("train"), split("t10k")


class EpochTimes:
    """A Keras callback's worth of epoch timing, without importing Keras at module level."""

    def __init__(self, keras) -> None:
        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                outer.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                outer.seconds.append(time.perf_counter() - outer.started)

        self.seconds: list[float] = []
        self.callback = Callback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("../shared/datasets/mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    import keras
    from keras import layers, models
    from keras.utils import to_categorical

    (train_images, train_labels), (test_images, test_labels) = load_data(args.mirror)

    # --- the seed, as written ---
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))

    train_images = train_images.reshape((len(train_images), 28, 28, 1))  # the seed: 60000, 10000
    train_images = train_images.astype("float32") / 255
    test_images = test_images.reshape((len(test_images), 28, 28, 1))
    test_images = test_images.astype("float32") / 255
    train_labels = to_categorical(train_labels)
    test_labels = to_categorical(test_labels)

    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    times = EpochTimes(keras)
    started = time.perf_counter()
    model.fit(train_images, train_labels, epochs=args.epochs, batch_size=64, callbacks=[times.callback])
    fit_s = time.perf_counter() - started
    test_loss, test_acc = model.evaluate(test_images, test_labels, verbose=0)
    # --- end of the seed ---

    print(json.dumps({
        "fit_s": fit_s, "epoch_s": times.seconds, "steps_per_epoch": -(-len(train_images) // 64),
        "test_acc": test_acc, "params": model.count_params(), "keras": keras.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
