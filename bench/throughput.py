"""Training throughput of tfvae's VAE against a minimal TensorFlow reference, side by side.

The model is the MLP VAE 784-512-256-32 with a Bernoulli likelihood, Adam 1e-3, batch 128, on
MNIST. The reference is the same math written directly in TensorFlow: plain variables, a
hand-written Adam, one jit-compiled tf.function per step, no Keras. Both read the same in-memory
batches. Runs alternate (tfvae, reference, tfvae, ...) so the machine's noise hits both alike;
the line printed holds the median examples/s of each and their ratio.

    python bench/throughput.py                      # MNIST from ../shared/data, 3 epochs, 3 runs
    python bench/throughput.py --dataset digits --epochs 30
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tensorflow_datasets"
HIDDEN, LATENT, LR = (512, 256), 32, 1e-3


def in_memory_batches(name, batch_size, data_dir):
    """All training images as one float32 array, served as a cached, prefetched dataset."""
    ds = tfvae.data.load(name, "train", batch_size=None, shuffle=False, data_dir=data_dir)
    images = np.stack(list(ds.as_numpy_iterator()))
    dataset = (tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=0)
               .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))
    return images, dataset


def run_tfvae(images, dataset, epochs, steps_per_execution):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=images.shape[1:], latent_dim=LATENT, hidden_units=HIDDEN)
    model.compile(optimizer=tf_keras.optimizers.Adam(LR), steps_per_execution=steps_per_execution)
    model.fit(dataset.take(2), epochs=1, verbose=0)  # compile outside the timed region
    start = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    return seconds, float(history.history["loss"][-1])


class Reference(tf.Module):
    """The same VAE in plain TensorFlow: dense layers, Bernoulli likelihood, analytic KL, Adam."""

    def __init__(self, input_size):
        super().__init__()
        glorot = tf.keras.initializers.GlorotUniform(seed=0)
        sizes_enc = [input_size, *HIDDEN, 2 * LATENT]
        sizes_dec = [LATENT, *HIDDEN[::-1], input_size]
        self.params = []
        for sizes in (sizes_enc, sizes_dec):
            for n_in, n_out in zip(sizes[:-1], sizes[1:]):
                self.params += [tf.Variable(glorot((n_in, n_out))), tf.Variable(tf.zeros([n_out]))]
        self.m = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.v = [tf.Variable(tf.zeros_like(p)) for p in self.params]
        self.t = tf.Variable(0.0)
        self.n_enc = 2 * (len(sizes_enc) - 1)

    @staticmethod
    def mlp(h, params):
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i < len(params) - 2:
                h = tf.nn.relu(h)
        return h

    def loss(self, x):
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        out = self.mlp(x, self.params[:self.n_enc])
        mu, raw = tf.split(out, 2, axis=-1)
        sigma = tf.nn.softplus(raw) + 1e-4
        z = mu + sigma * tf.random.normal(tf.shape(mu))
        logits = self.mlp(z, self.params[self.n_enc:])
        reconstruction = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=-1)
        kl = 0.5 * tf.reduce_sum(mu ** 2 + sigma ** 2 - 1.0 - 2.0 * tf.math.log(sigma), axis=-1)
        return tf.reduce_mean(reconstruction + kl)

    @tf.function(jit_compile=True)
    def step(self, x):
        with tf.GradientTape() as tape:
            loss = self.loss(x)
        grads = tape.gradient(loss, self.params)
        self.t.assign_add(1.0)
        b1, b2, eps = 0.9, 0.999, 1e-7
        lr = LR * tf.sqrt(1.0 - b2 ** self.t) / (1.0 - b1 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m.assign(b1 * m + (1.0 - b1) * g)
            v.assign(b2 * v + (1.0 - b2) * g * g)
            p.assign_sub(lr * m / (tf.sqrt(v) + eps))
        return loss


def run_reference(images, dataset, epochs):
    tf.random.set_seed(0)
    reference = Reference(int(np.prod(images.shape[1:])))
    for x in dataset.take(2):
        reference.step(x)
    start = time.perf_counter()
    for _ in range(epochs):
        losses = [reference.step(x) for x in dataset]
    seconds = time.perf_counter() - start
    return seconds, float(tf.reduce_mean(losses))  # the last epoch's mean, as Keras reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps-per-execution", type=int, default=1)
    args = parser.parse_args(argv)

    images, dataset = in_memory_batches(args.dataset, args.batch_size, args.data_dir)
    examples = args.epochs * (len(images) // args.batch_size) * args.batch_size
    speeds = {"tfvae": [], "reference": []}
    losses = {}
    for _ in range(args.runs):
        seconds, losses["tfvae"] = run_tfvae(images, dataset, args.epochs, args.steps_per_execution)
        speeds["tfvae"].append(examples / seconds)
        seconds, losses["reference"] = run_reference(images, dataset, args.epochs)
        speeds["reference"].append(examples / seconds)
    median = {k: statistics.median(v) for k, v in speeds.items()}
    print(json.dumps({
        "benchmark": "throughput", "dataset": args.dataset, "model": "VAE 784-512-256-32 bernoulli",
        "batch_size": args.batch_size, "epochs": args.epochs, "runs": args.runs,
        "steps_per_execution": args.steps_per_execution,
        "tfvae_examples_per_s": round(median["tfvae"], 1),
        "reference_examples_per_s": round(median["reference"], 1),
        "ratio": round(median["tfvae"] / median["reference"], 3),
        "all_runs": {k: [round(s, 1) for s in v] for k, v in speeds.items()},
        "final_train_loss": {k: round(v, 2) for k, v in losses.items()},
        "tensorflow": tf.__version__,
    }))


if __name__ == "__main__":
    main()
