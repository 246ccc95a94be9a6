"""Training throughput through the path a user takes, next to the same fit fed from memory and a
minimal TensorFlow reference, side by side.

Four arms per model size, all on dynamically binarized MNIST, Bernoulli likelihood, Adam 1e-3:
- "load": `tfvae.data.load("mnist", binarize="dynamic")` into `model.fit`, `compile()` defaults
  (what the README teaches);
- "from_arrays": the same through `tfvae.data.from_arrays(images, binarize="dynamic")`;
- "in_memory": the same model and `compile()` defaults, fed from a plain
  `tf.data.Dataset.from_tensor_slices(bits).shuffle().batch().prefetch()` of one fixed
  binarization in memory: no per-batch work at all, the ideal pipeline;
- "in_memory_spe1", "in_memory_spe64": "in_memory" with `compile(steps_per_execution=1)` (one
  step per call of the compiled function, Keras' own default) and `=64`, to show that the
  default count (`tfvae.speed.STEPS_PER_CALL`) is as fast as the best;
- "reference": the same math written directly in TensorFlow (plain variables, a hand-written
  Adam, one jit-compiled tf.function per step, no Keras) on that in-memory pipeline.
Runs alternate between the arms, in a rotating order, so the machine's noise hits all alike.
Each run trains `--epochs + 1` epochs; the first (tracing, XLA compilation, the partial last
batch's shape) is not timed. The line printed holds, per size, the median examples/s of each
arm and the median CPU seconds (all the process's threads) per timed epoch, each with two kinds of
ratio: of the medians ("ratios", "cpu_ratios"), and the median of each run's own ratio
("paired_ratios", "paired_cpu_ratios"). On a shared machine whose speed wanders by tens of
percent between runs, CPU seconds hold steadier than the wall clock, and a run's own ratios
steadier than the medians, since the arms of one run follow each other within minutes.

    python bench/throughput.py                        # both sizes, 2 timed epochs, 5 runs
    python bench/throughput.py --sizes paper          # the IWAE paper's VAE alone
"""
import argparse
import json
import os
import resource
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


LR = 1e-3
#: name -> (hidden units, latent dim, batch size)
SIZES = {"paper": ((200, 200), 50, 100),   # the IWAE paper's one-layer VAE
         "large": ((512, 256), 32, 128)}
ARMS = ("load", "from_arrays", "in_memory", "in_memory_spe1", "in_memory_spe64", "reference")


def clocks():
    """(wall seconds, CPU seconds of this process on all its threads, tf.data's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([time.perf_counter(), usage.ru_utime + usage.ru_stime])


class EpochTimer(tf_keras.callbacks.Callback):
    """Each epoch's (wall seconds, CPU seconds)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = clocks()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(clocks() - self._start)


def run_tfvae(dataset, shape, hidden, latent, epochs, steps_per_execution=None):
    """Seconds and CPU seconds of the epochs after the first, and the last epoch's loss."""
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=shape, latent_dim=latent, hidden_units=hidden)
    model.compile(steps_per_execution=steps_per_execution)
    timer = EpochTimer()
    history = model.fit(dataset, epochs=epochs + 1, verbose=0, callbacks=[timer])
    return (*sum(timer.epochs[1:]), float(history.history["loss"][-1]))


class Reference(tf.Module):
    """The same VAE in plain TensorFlow: dense layers, Bernoulli likelihood, analytic KL, Adam."""

    def __init__(self, input_size, hidden, latent):
        super().__init__()
        glorot = tf.keras.initializers.GlorotUniform(seed=0)
        sizes_enc = [input_size, *hidden, 2 * latent]
        sizes_dec = [latent, *hidden[::-1], input_size]
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


def run_reference(dataset, shape, hidden, latent, epochs):
    tf.random.set_seed(0)
    reference = Reference(int(np.prod(shape)), hidden, latent)
    timed = []
    for _ in range(epochs + 1):
        start = clocks()
        losses = [reference.step(x) for x in dataset]
        timed.append(clocks() - start)
    # the last epoch's mean loss, as Keras reports it
    return (*sum(timed[1:]), float(tf.reduce_mean(losses)))


def measure_size(name, grey, args):
    hidden, latent, batch = SIZES[name]
    n = len(grey)
    # One fixed binarization for the in-memory arms: the same statistics, no per-batch work.
    bits = (np.random.default_rng(0).random(grey.shape, np.float32) < grey).astype(np.float32)
    in_memory = (tf.data.Dataset.from_tensor_slices(bits).shuffle(n, seed=0)
                 .batch(batch).prefetch(tf.data.AUTOTUNE))
    datasets = {
        "load": tfvae.data.load(args.dataset, "train", batch_size=batch, binarize="dynamic",
                                data_dir=args.data_dir, download=False),
        "from_arrays": tfvae.data.from_arrays(grey, batch_size=batch, binarize="dynamic"),
        "in_memory": in_memory,
    }
    speeds, cpu, losses = {arm: [] for arm in args.arms}, {arm: [] for arm in args.arms}, {}
    for run in range(args.runs):
        # A rotating order: a slow spell of the machine hits every arm alike over the runs.
        for arm in args.arms[run % len(args.arms):] + args.arms[:run % len(args.arms)]:
            if arm == "reference":
                seconds, cpu_used, losses[arm] = run_reference(in_memory, grey.shape[1:], hidden,
                                                                latent, args.epochs)
            else:
                source, _, spe = arm.partition("_spe")
                seconds, cpu_used, losses[arm] = run_tfvae(datasets[source], grey.shape[1:],
                                                           hidden, latent, args.epochs,
                                                           int(spe) if spe else None)
            speeds[arm].append(args.epochs * n / seconds)
            cpu[arm].append(cpu_used / args.epochs)
            print(f"{name} {arm}: {speeds[arm][-1]:.0f} examples/s, {cpu[arm][-1]:.2f} CPU s "
                  f"an epoch", file=sys.stderr, flush=True)
    median = {arm: statistics.median(v) for arm, v in speeds.items()}
    cpu_median = {arm: statistics.median(v) for arm, v in cpu.items()}
    model = f"VAE {int(np.prod(grey.shape[1:]))}-{'-'.join(map(str, hidden))}-{latent} bernoulli"
    result = {"model": model, "batch_size": batch,
              "examples_per_s": {arm: round(v, 1) for arm, v in median.items()}}
    pairs = [(arm, base) for arm in ("load", "from_arrays") for base in ("in_memory", "reference")]
    pairs += [("in_memory", base) for base in ("in_memory_spe1", "in_memory_spe64", "reference")]
    pairs = [(arm, base) for arm, base in pairs if arm in speeds and base in speeds]

    def ratios(values, paired=False, seconds=False):
        # arm / base as ratios of speeds (of CPU seconds: base / arm). Paired: the median of each
        # run's own ratio; a run's arms follow each other within minutes, so a slow spell of the
        # machine, which moves the medians, mostly cancels there.
        def ratio(a, b):
            return b / a if seconds else a / b
        return {f"{arm}/{base}": round(
            statistics.median(map(ratio, values[arm], values[base])) if paired else
            ratio(statistics.median(values[arm]), statistics.median(values[base])), 3)
            for arm, base in pairs}

    result.update(ratios=ratios(speeds), paired_ratios=ratios(speeds, paired=True),
                  all_runs={k: [round(s, 1) for s in v] for k, v in speeds.items()},
                  cpu_seconds_per_epoch={k: round(v, 2) for k, v in cpu_median.items()},
                  cpu_ratios=ratios(cpu, seconds=True),
                  paired_cpu_ratios=ratios(cpu, paired=True, seconds=True),
                  all_runs_cpu_seconds_per_epoch={k: [round(s, 2) for s in v]
                                                  for k, v in cpu.items()},
                  final_train_loss={k: round(v, 2) for k, v in losses.items()})
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=str(TFDS_DIR))
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run")
    parser.add_argument("--runs", type=int, default=5,
                        help="runs per arm (medians of 3 moved by +-0.1 here from run to run)")
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    args = parser.parse_args(argv)

    grey_ds = tfvae.data.load(args.dataset, "train", batch_size=None, shuffle=False,
                              data_dir=args.data_dir, download=False)
    grey = np.stack(list(grey_ds.as_numpy_iterator()))
    results = {name: measure_size(name, grey, args) for name in args.sizes}
    print(json.dumps({
        "benchmark": "throughput", "dataset": f"{args.dataset} (dynamic binarization)",
        "optimizer": "Adam 1e-3", "epochs_timed": args.epochs, "runs": args.runs,
        "examples_per_epoch": len(grey), "sizes": results, "tensorflow": tf.__version__,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
