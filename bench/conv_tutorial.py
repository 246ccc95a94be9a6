"""Training speed of tfvae's convolutional VAE against the official TensorFlow CVAE tutorial's
own loop (https://www.tensorflow.org/tutorials/generative/cvae), side by side.

The tutorial's setting: MNIST statically binarized by thresholding (pixels > .5), latent_dim 2,
batch 32, Adam(1e-4), Bernoulli likelihood. Arms:
- "tutorial": the tutorial's code in spirit: its CVAE's two Sequential networks (tf_keras
  layers), its `compute_loss` (the single-sample Monte Carlo ELBO with `log_normal_pdf`), its
  `@tf.function train_step`, its `from_tensor_slices(...).shuffle(60000).batch(32)` pipeline and
  its Python loop over the batches;
- "tfvae": `tfvae.models.VAE` with the tutorial's layers given as `encoder=` / `decoder=`
  (tfvae adds its heads: Dense(2 * latent) on the encoder, as the tutorial's last layer, and a
  1x1 convolution on the decoder's one-channel logits), fed by `tfvae.data.from_arrays` on the
  same bits, `compile(optimizer=Adam(1e-4))` (otherwise defaults), `model.fit`;
- "tfvae_default": the same through `VAE(network="conv")`'s built-in body, which differs from
  the tutorial's (padding "same": 7x7x64 features; a 7x7x64 decoder start; a 1x1 convolution
  head instead of the last 3x3 transposed convolution);
- "tfvae_xla" (only when named with --arms): "tfvae" compiled with `jit_compile=True`, which
  `compile()`'s default leaves off for convolutional models (`VAE.xla_pays()`).
Each run trains `--epochs + 1` full epochs per arm; the first (tracing, the shuffle buffer's
first fill) is not timed. Runs alternate between the arms, in a rotating order, so the machine's
noise hits all alike; the process's CPU time of each timed epoch is recorded too. Untimed, after
training, each arm's negative ELBO on the first 2,000 test images (one sample per image) checks
that the arms learn alike. The line printed holds the median examples/s (and examples per CPU
second) of each arm over the runs and the ratios to the tutorial.

    python bench/conv_tutorial.py                     # 1 timed epoch (60,000 images), 3 runs
    python bench/conv_tutorial.py --runs 5 --arms tfvae tutorial
    python bench/conv_tutorial.py --examples 6400     # epochs of the first 6,400 images
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from shared_data import TFDS_DIR  # noqa: E402


LATENT, BATCH, LR = 2, 32, 1e-4
ARMS = ("tfvae", "tfvae_default", "tutorial")
#: arms run only when named with --arms
EXTRA_ARMS = ("tfvae_xla",)
TEST_IMAGES = 2000


# ---- the tutorial --------------------------------------------------------------------------
def tutorial_encoder(latent_dim, with_head=True):
    layers = [tf_keras.layers.InputLayer(input_shape=(28, 28, 1)),
              tf_keras.layers.Conv2D(filters=32, kernel_size=3, strides=(2, 2), activation="relu"),
              tf_keras.layers.Conv2D(filters=64, kernel_size=3, strides=(2, 2), activation="relu"),
              tf_keras.layers.Flatten()]
    if with_head:  # No activation
        layers.append(tf_keras.layers.Dense(latent_dim + latent_dim))
    return tf_keras.Sequential(layers)


def tutorial_decoder(latent_dim):
    return tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(latent_dim,)),
        tf_keras.layers.Dense(units=7 * 7 * 32, activation=tf.nn.relu),
        tf_keras.layers.Reshape(target_shape=(7, 7, 32)),
        tf_keras.layers.Conv2DTranspose(filters=64, kernel_size=3, strides=2, padding="same",
                                        activation="relu"),
        tf_keras.layers.Conv2DTranspose(filters=32, kernel_size=3, strides=2, padding="same",
                                        activation="relu"),
        # No activation
        tf_keras.layers.Conv2DTranspose(filters=1, kernel_size=3, strides=1, padding="same"),
    ])


class CVAE(tf_keras.Model):
    """Convolutional variational autoencoder (the tutorial's class)."""

    def __init__(self, latent_dim):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = tutorial_encoder(latent_dim)
        self.decoder = tutorial_decoder(latent_dim)

    def encode(self, x):
        mean, logvar = tf.split(self.encoder(x), num_or_size_splits=2, axis=1)
        return mean, logvar

    def reparameterize(self, mean, logvar):
        eps = tf.random.normal(shape=mean.shape)
        return eps * tf.exp(logvar * .5) + mean

    def decode(self, z, apply_sigmoid=False):
        logits = self.decoder(z)
        if apply_sigmoid:
            return tf.sigmoid(logits)
        return logits


def log_normal_pdf(sample, mean, logvar, raxis=1):
    log2pi = tf.math.log(2. * np.pi)
    return tf.reduce_sum(-.5 * ((sample - mean) ** 2. * tf.exp(-logvar) + logvar + log2pi),
                         axis=raxis)


def compute_loss(model, x):
    mean, logvar = model.encode(x)
    z = model.reparameterize(mean, logvar)
    x_logit = model.decode(z)
    cross_ent = tf.nn.sigmoid_cross_entropy_with_logits(logits=x_logit, labels=x)
    logpx_z = -tf.reduce_sum(cross_ent, axis=[1, 2, 3])
    logpz = log_normal_pdf(z, 0., 0.)
    logqz_x = log_normal_pdf(z, mean, logvar)
    return -tf.reduce_mean(logpx_z + logpz - logqz_x)


def make_train_step():
    """The tutorial's `@tf.function train_step`, a fresh one per run: a tf.function creates
    variables (Adam's slots) on its first trace only, so a second model cannot reuse it."""
    @tf.function
    def train_step(model, x, optimizer):
        with tf.GradientTape() as tape:
            loss = compute_loss(model, x)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return train_step


def run_tutorial(bits, test_bits, epochs):
    """Wall and CPU seconds of the epochs after the first, and the test images' negative
    ELBO."""
    tf_keras.utils.set_random_seed(0)
    train_dataset = (tf.data.Dataset.from_tensor_slices(bits).shuffle(len(bits)).batch(BATCH))
    model = CVAE(LATENT)
    optimizer = tf_keras.optimizers.Adam(LR)
    train_step = make_train_step()
    seconds, cpu_seconds = [], []
    for _ in range(epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        for train_x in train_dataset:
            train_step(model, train_x, optimizer)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    neg_elbo = float(np.mean([compute_loss(model, x) for x in
                              tf.data.Dataset.from_tensor_slices(test_bits).batch(500)]))
    return sum(seconds[1:]), sum(cpu_seconds[1:]), neg_elbo


# ---- tfvae ---------------------------------------------------------------------------------
class EpochTimer(tf_keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds, self.cpu_seconds = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def tfvae_model(arm):
    if arm in ("tfvae", "tfvae_xla"):
        return tfvae.models.VAE(input_shape=(28, 28, 1), latent_dim=LATENT,
                                encoder=tutorial_encoder(LATENT, with_head=False),
                                decoder=tutorial_decoder(LATENT))
    return tfvae.models.VAE(input_shape=(28, 28, 1), latent_dim=LATENT, network="conv")


def run_tfvae(arm, bits, test_bits, epochs):
    tf_keras.utils.set_random_seed(0)
    dataset = tfvae.data.from_arrays(bits, batch_size=BATCH)
    model = tfvae_model(arm)
    model.compile(optimizer=tf_keras.optimizers.Adam(LR),
                  **({"jit_compile": True} if arm == "tfvae_xla" else {}))
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs + 1, verbose=0, callbacks=[timer])
    neg_elbo = -model.evaluate(test_bits, batch_size=500, verbose=0, return_dict=True)["elbo"]
    return sum(timer.seconds[1:]), sum(timer.cpu_seconds[1:]), float(neg_elbo)


def describe(arm):
    model = CVAE(LATENT) if arm == "tutorial" else tfvae_model(arm)
    if arm == "tutorial":
        return {"parameters": int(model.encoder.count_params() + model.decoder.count_params())}
    return {"parameters": int(model.count_params()),
            "xla": arm == "tfvae_xla" or bool(model.xla_pays())}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(TFDS_DIR),
                        help="TFDS data folder holding mnist (default: ../shared/data's)")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=None,
                        help="train on the first N training images only (a multiple of 32)")
    parser.add_argument("--arms", nargs="+", choices=ARMS + EXTRA_ARMS, default=list(ARMS))
    args = parser.parse_args(argv)
    if args.examples is not None and (args.examples < BATCH or args.examples % BATCH):
        parser.error(f"--examples must be a positive multiple of {BATCH}")

    def images(split, take=None):
        ds = tfvae.data.load("mnist", split, batch_size=None, shuffle=False,
                             data_dir=args.data_dir, download=False, take=take)
        grey = np.stack(list(ds.as_numpy_iterator()))
        # The tutorial's preprocess_images: static binarization by thresholding.
        return np.where(grey > .5, 1.0, 0.0).astype("float32")

    bits, test_bits = images("train", args.examples), images("test", TEST_IMAGES)
    speeds = {arm: [] for arm in args.arms}
    cpu_speeds = {arm: [] for arm in args.arms}
    losses = {arm: [] for arm in args.arms}
    for run in range(args.runs):
        order = args.arms[run % len(args.arms):] + args.arms[:run % len(args.arms)]
        for arm in order:
            if arm == "tutorial":
                seconds, cpu_seconds, loss = run_tutorial(bits, test_bits, args.epochs)
            else:
                seconds, cpu_seconds, loss = run_tfvae(arm, bits, test_bits, args.epochs)
            speeds[arm].append(args.epochs * len(bits) / seconds)
            cpu_speeds[arm].append(args.epochs * len(bits) / cpu_seconds)
            losses[arm].append(loss)
            print(f"run {run + 1} {arm}: {speeds[arm][-1]:.0f} examples/s "
                  f"({cpu_speeds[arm][-1]:.0f} per CPU second), test -ELBO {loss:.1f}",
                  file=sys.stderr, flush=True)

    def medians_and_ratios(values):
        median = {arm: statistics.median(v) for arm, v in values.items()}
        ratios = {f"{arm}/tutorial": round(median[arm] / median["tutorial"], 3)
                  for arm in median if arm != "tutorial" and "tutorial" in median}
        return {arm: round(v, 1) for arm, v in median.items()}, ratios

    median, ratios = medians_and_ratios(speeds)
    cpu_median, cpu_ratios = medians_and_ratios(cpu_speeds)
    print(json.dumps({
        "benchmark": "conv_tutorial",
        "setting": "MNIST thresholded at .5, latent 2, batch 32, Adam 1e-4, Bernoulli",
        "examples_per_epoch": len(bits), "epochs_timed": args.epochs, "runs": args.runs,
        "examples_per_s": median, "ratios": ratios,
        "all_runs": {arm: [round(s, 1) for s in v] for arm, v in speeds.items()},
        # The process's CPU time (all its threads): less sensitive than the wall clock to
        # other processes on the machine, but it counts threads that spin while waiting.
        "examples_per_cpu_s": cpu_median, "cpu_ratios": cpu_ratios,
        "all_runs_cpu": {arm: [round(s, 1) for s in v] for arm, v in cpu_speeds.items()},
        "test_neg_elbo": {arm: round(statistics.median(v), 1) for arm, v in losses.items()},
        "models": {arm: describe(arm) for arm in args.arms},
        "tensorflow": tf.__version__, "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
