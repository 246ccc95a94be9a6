"""The dynamic binarization's draw alone, on one chunk of the pipeline, against the textbook draw.

`tfvae.data` binarizes a chunk of batches at a time (`_CHUNK_BYTES` of float32: 10,600 MNIST
images at batch 100). Arms, each a `tf.function` on the same chunk, timed interleaved:
- "byte_uint8": `tfvae.data.bernoulli_bits` on the 8-bit images, as `data.load` calls it: one random
  byte a pixel, the tied byte settled by a further uniform;
- "byte_float": the same on float32 images in [0, 1], as `data.from_arrays` calls it;
- "uniform_uint8", "uniform_float": the reference, Bernoulli(p) as `uniform < p` with a float32
  uniform a pixel (`tf.random.stateless_uniform`): what the pipeline drew before, converting the
  8-bit images to float first.
The line holds each arm's median milliseconds (wall and CPU, all threads) per chunk, the ratios
reference / byte (> 1: the byte draw is faster), and each arm's mean bit beside the mean grey level.

    python bench/bernoulli.py                     # MNIST's first chunk, 15 runs
    python bench/bernoulli.py --dataset digits --runs 5
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()
from tfvae import data  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from shared_data import TFDS_DIR  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=str(TFDS_DIR))
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)

    grey = np.stack(list(tfvae.data.load(args.dataset, "train", batch_size=None, shuffle=False,
                                         data_dir=args.data_dir, download=False)
                         .as_numpy_iterator()))
    grey = grey[:data.examples_per_chunk(args.batch_size, grey.shape[1:])]
    levels = 16 if args.dataset == "digits" else 255  # the grey levels are k / levels
    if np.abs(np.round(grey * levels) / levels - grey).max() > 1e-6:
        parser.error(f"{args.dataset}'s grey levels are not k / {levels}: no 8-bit arm for it")
    counts = tf.constant(np.round(grey * levels).astype(np.uint8))
    floats = tf.constant(grey)
    seed = tf.constant([1, 2], tf.int64)

    def uniform(images, scale):
        p = tf.cast(images, tf.float32) / scale
        return tf.cast(tf.random.stateless_uniform(tf.shape(p), seed) < p, tf.float32)

    arms = {
        "byte_uint8": tf.function(lambda: data.bernoulli_bits(counts, levels, seed)),
        "byte_float": tf.function(lambda: data.bernoulli_bits(floats, 1, seed)),
        "uniform_uint8": tf.function(lambda: uniform(counts, levels)),
        "uniform_float": tf.function(lambda: uniform(floats, 1)),
    }
    means = {arm: float(tf.reduce_mean(run())) for arm, run in arms.items()}  # traced here
    wall, cpu = {arm: [] for arm in arms}, {arm: [] for arm in arms}
    for run in range(args.runs):
        order = list(arms)[run % len(arms):] + list(arms)[:run % len(arms)]
        for arm in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            arms[arm]().numpy()
            wall[arm].append(1000 * (time.perf_counter() - start))
            cpu[arm].append(1000 * (time.process_time() - cpu_start))
    median = {name: {arm: round(statistics.median(v), 1) for arm, v in values.items()}
              for name, values in (("wall_ms", wall), ("cpu_ms", cpu))}
    print(json.dumps({
        "benchmark": "bernoulli", "dataset": args.dataset, "chunk_images": len(grey),
        "pixels": int(np.prod(grey.shape)), "runs": args.runs, **median,
        "cpu_ratios": {f"uniform_{kind}/byte_{kind}": round(
            median["cpu_ms"][f"uniform_{kind}"] / median["cpu_ms"][f"byte_{kind}"], 3)
            for kind in ("uint8", "float")},
        "wall_ratios": {f"uniform_{kind}/byte_{kind}": round(
            median["wall_ms"][f"uniform_{kind}"] / median["wall_ms"][f"byte_{kind}"], 3)
            for kind in ("uint8", "float")},
        "mean_bit": {arm: round(m, 5) for arm, m in means.items()},
        "mean_grey": round(float(grey.mean()), 5), "tensorflow": tf.__version__,
    }))


if __name__ == "__main__":
    main()
