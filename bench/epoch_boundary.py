"""The seconds `model.fit` spends between epochs with tfvae's pipelines, with tf.data's
autotuning (as the pipelines had it) and without (as they ship), side by side.

Keras makes a new iterator over the training data every epoch (and one over the validation data
for every evaluation) and releases the old one. Releasing an autotuned iterator waits for
autotuning's background thread, which wakes on its own schedule: up to seconds, at random
epochs. The pipelines now run with fixed sizes and autotuning off (`tfvae.data._AUTOTUNE`).

Both arms take the README's path: `tfvae.data.load("mnist", binarize="dynamic")` for training
and the test split for `validation_data`, the IWAE paper's one-layer VAE (784-200-200-50, batch
100), `compile()` defaults. Runs alternate between the arms; each trains `--epochs + 1` epochs and
the first (tracing) is not timed. A callback times every boundary: from one epoch's end (after
its validation) to the next epoch's first step. The line printed holds, per arm, the medians over
runs of the seconds per timed epoch (boundaries included) and of the seconds inside epochs
(steps and validation alone), the boundaries' median and largest seconds, and the ratios of the
medians (autotune over fixed).

    python bench/epoch_boundary.py                 # 3 runs of 5 timed epochs per arm
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()

import tf_keras  # noqa: E402
from shared_data import TFDS_DIR  # noqa: E402

ARMS = {"fixed": False, "autotune": True}   # tfvae.data._AUTOTUNE


class Boundaries(tf_keras.callbacks.Callback):
    """Seconds inside each epoch (first step to the end of its validation) and between epochs."""

    def __init__(self):
        super().__init__()
        self.inside, self.between, self.ended = [], [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.began = time.monotonic()
        if self.ended is not None:
            self.between.append(self.began - self.ended)

    def on_epoch_end(self, epoch, logs=None):
        self.ended = time.monotonic()
        self.inside.append(self.ended - self.began)


def one_run(arm, epochs, take):
    tfvae.data._AUTOTUNE = ARMS[arm]
    train = tfvae.data.load("mnist", "train", batch_size=100, binarize="dynamic", seed=1,
                            data_dir=TFDS_DIR, download=False, take=take)
    test = tfvae.data.load("mnist", "test", batch_size=500, binarize="static", seed=0,
                           data_dir=TFDS_DIR, download=False)
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=(28, 28, 1), latent_dim=50, hidden_units=(200, 200))
    model.compile()
    timer = Boundaries()
    model.fit(train, epochs=1, validation_data=test, verbose=0)   # tracing, not timed
    start = time.monotonic()
    model.fit(train, initial_epoch=1, epochs=epochs + 1, validation_data=test, verbose=0,
              callbacks=[timer])
    total = time.monotonic() - start
    return {"epoch_seconds": total / epochs, "inside_seconds": statistics.median(timer.inside),
            "boundaries": timer.between}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per run")
    parser.add_argument("--take", type=int, default=None, help="training images (all: 60,000)")
    args = parser.parse_args(argv)
    results = {arm: [] for arm in ARMS}
    for run in range(args.runs):
        order = list(ARMS) if run % 2 == 0 else list(ARMS)[::-1]
        for arm in order:
            results[arm].append(one_run(arm, args.epochs, args.take))
    line = {"benchmark": "epoch_boundary", "runs": args.runs, "timed_epochs": args.epochs,
            "model": "VAE 784-200-200-50, batch 100, validation on the 10,000 test images",
            "train_images": args.take or 60_000}
    for arm, runs in results.items():
        boundaries = [b for r in runs for b in r["boundaries"]]
        line[arm] = {
            "epoch_seconds": round(statistics.median(r["epoch_seconds"] for r in runs), 3),
            "inside_seconds": round(statistics.median(r["inside_seconds"] for r in runs), 3),
            "boundary_median_seconds": round(statistics.median(boundaries), 3),
            "boundary_max_seconds": round(max(boundaries), 3),
            "boundaries_over_half_a_second": sum(b > 0.5 for b in boundaries),
            "boundaries": len(boundaries)}
    for key in ("epoch_seconds", "inside_seconds"):
        line[f"{key}_ratio"] = round(line["autotune"][key] / line["fixed"][key], 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
