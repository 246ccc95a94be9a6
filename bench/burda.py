"""Reproduce Burda et al. (2015), Table 1, VAE rows: the one-layer (784-200-200-50) and the
two-layer (100 and 50 latents over 200-200 and 100-100) VAE on dynamically binarized MNIST,
trained on the paper's budget, in segments that survive interruption.

    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --minutes 120   # start or continue
    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --status        # where it is, curve.png
    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --finish        # evaluate, export

Protocol (stated in the run's `protocol.json` and the model card):
- the paper's schedule: 3280 epochs, stage i = 0..7 lasting 3^i epochs at learning rate
  1e-3 * 10^(-i/7), Adam (beta1 0.9, beta2 0.999, epsilon 1e-4); the rate is an in-graph
  schedule of the optimizer's step count, so a resumed run continues it exactly;
- batch 100, not the paper's 20: here an epoch costs ~6 s at batch 100 and ~16 s at batch 20
  (the step is compute-bound on 2 cores), so the paper's batch would need ~15 hours per model;
- training images: the 60,000 MNIST training images, binarized afresh every epoch
  (tfvae.data.from_arrays(..., binarize="dynamic"));
- units: ReLU (the paper's tanh trained far slower in bench/likelihood.py's short runs), and a
  KL warm-up over the first WARMUP_EPOCHS epochs (Sønderby et al. 2016), which keeps the
  two-layer model's upper layer from collapsing early; no batch norm;
- test images: the learning curve uses a fixed random 1,000 of the 10,000 test images in one
  fixed binarization (seed 123), k = 5000, every --eval-every epochs; `--finish` scores all
  10,000 in the zoo's binarization (ZOO_TEST), the one `tfvae evaluate` uses for the cards.

A segment trains until --minutes have passed (or the schedule is done), checkpointing every
--checkpoint-minutes and when it stops; the next segment restores the latest checkpoint (model,
optimizer with its step count, epochs done) and goes on. The run directory keeps only the latest
checkpoint, `log.jsonl` (one line per epoch), `curve.jsonl` (the learning curve), and
`segments.jsonl` (each segment's epochs and wall time), a few MB in all: commit it to carry the
run to the next session. `--finish` evaluates the model at its latest checkpoint (test NLL at
k = 5000 on all 10,000 test images, ELBO, active units), draws the curve as PNG, prints one JSON
line and appends it to `evaluations.jsonl`; `--export` also ships it as a new version of
saved_models/<model>_mnist (card, figures, the manifest zoo.json, saved_models/README.md).
"""
import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

# tfvae before TensorFlow: importing it quiets TensorFlow's C++ start-up logs (tfvae.logs).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import tfvae  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from shared_data import SHARED_DATA  # noqa: E402


MNIST = (28, 28, 1)
STAGES = 8                         # i = 0..7
EPOCHS = sum(3 ** i for i in range(STAGES))   # 3280
BATCH = 100
WARMUP_EPOCHS = 10
TEST_SEED = 123
PUBLISHED = {"vae": 86.76, "hvae": 85.33}     # Burda et al. 2015, Table 1, VAE k = 1
#: the final evaluation's test set: the zoo's fixed binarization (bench/train_zoo.py)
ZOO_TEST = "tfvae.data.load('mnist', 'test', binarize='static', seed=0)"


def build(name):
    if name == "vae":
        return tfvae.models.VAE(input_shape=MNIST, latent_dim=50, hidden_units=(200, 200))
    # The paper's model: no batch norm; the warm-up is this script's own (per epoch,
    # WARMUP_EPOCHS), not the model's default.
    return tfvae.models.HierarchicalVAE(input_shape=MNIST, latent_dims=(100, 50),
                                        hidden_units=((200, 200), (100, 100)), batch_norm=False,
                                        kl_warmup_steps=0)


def learning_rate(steps_per_epoch):
    """The paper's schedule as a function of the optimizer's step count."""
    boundaries, epochs = [], 0
    for i in range(STAGES - 1):
        epochs += 3 ** i
        boundaries.append(epochs * steps_per_epoch)
    values = [1e-3 * 10 ** (-i / 7) for i in range(STAGES)]
    return tf_keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def mnist(split):
    """MNIST grey levels in [0, 1] from the shared TFDS folder, [n, 28, 28, 1] float32."""
    batches = tfvae.data.load("mnist", split, batch_size=10_000, shuffle=False,
                              data_dir=SHARED_DATA / "tensorflow_datasets", download=False)
    return np.concatenate([b.numpy() for b in batches])


def test_images():
    """One fixed binarization of the test set (the same for every run and every evaluation)."""
    grey = mnist("test")
    u = np.random.default_rng(TEST_SEED).random(grey.shape, dtype=np.float32)
    return (u < grey).astype(np.float32)


def curve_subset(test, size=1000):
    return test[np.sort(np.random.default_rng(0).choice(len(test), size, replace=False))]


def log_likelihood(model, images, k=5000):
    return model.log_likelihood(images, num_samples=k).numpy()   # with a progress bar


def shown(path):
    """A path as the repository names it (relative to its root), never this machine's."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


class Run:
    """The run directory: checkpoint, logs and the protocol, as the repository keeps them."""

    def __init__(self, directory, name, steps_per_epoch, train_examples=60_000):
        self.dir = Path(directory)
        self.name, self.train_examples = name, train_examples
        self.model = build(name)
        self.model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate(steps_per_epoch),
                                                              epsilon=1e-4),
                           steps_per_execution=50)
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Create the optimizer's slots now, so that a restore fills them at once.
        self.model.optimizer.build(self.model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer,
                                              epochs_done=self.epochs_done)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.dir / "checkpoint"),
                                                  max_to_keep=1)

    def restore(self):
        protocol = {"model": self.name, "config": self.model.get_config(), "batch": BATCH,
                    "epochs": EPOCHS, "warmup_epochs": WARMUP_EPOCHS,
                    "schedule": "3^i epochs at 1e-3 * 10^(-i/7), i = 0..7",
                    "optimizer": "Adam(beta1=0.9, beta2=0.999, epsilon=1e-4)",
                    "data": f"MNIST train ({self.train_examples} images), dynamic binarization "
                            f"every epoch",
                    "test": f"MNIST test, one fixed binarization (seed {TEST_SEED})"}
        record = self.dir / "protocol.json"
        if record.exists():
            stored = json.loads(record.read_text())
            if json.loads(json.dumps(protocol)) != stored:
                raise SystemExit(f"{self.dir} holds another run's protocol; use another folder")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            record.write_text(json.dumps(protocol, indent=1))
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        done = int(self.epochs_done.numpy())
        self.forget_after(done)
        self.account_for_killed_segment(done)
        return done

    def account_for_killed_segment(self, epochs):
        """A segment killed with its machine (no SIGTERM) checkpointed but never wrote its
        record: rebuild it from the epoch and evaluation times it logged, marked as such."""
        recorded = max((s["last_epoch"] for s in self.read("segments.jsonl")), default=0)
        if recorded >= epochs:
            return
        log = [r for r in self.read("log.jsonl") if recorded < r["epoch"] <= epochs]
        curve = [r for r in self.read("curve.jsonl") if recorded < r["epoch"] <= epochs]
        self.append("segments.jsonl", {
            "first_epoch": recorded + 1, "last_epoch": epochs, "epochs": epochs - recorded,
            "wall_seconds": round(sum(r["seconds"] for r in log)
                                  + sum(r["eval_seconds"] for r in curve), 1),
            "reconstructed": "from log.jsonl and curve.jsonl: the segment was killed"})

    def forget_after(self, epochs):
        """Drop log and curve lines of epochs past the checkpoint: a segment that was killed
        before its last checkpoint trains those epochs again, and logs them again."""
        for file in ("log.jsonl", "curve.jsonl"):
            kept = [r for r in self.read(file) if r["epoch"] <= epochs]
            if len(kept) != len(self.read(file)):
                (self.dir / file).write_text("".join(json.dumps(r) + "\n" for r in kept))

    def save(self, epochs):
        self.epochs_done.assign(epochs)
        self.manager.save(checkpoint_number=epochs)

    def append(self, file, record):
        with open(self.dir / file, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def read(self, file):
        path = self.dir / file
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Segment(tf_keras.callbacks.Callback):
    """Per epoch: the log line, the learning curve when due, a checkpoint when due, and the
    end of the segment when its minutes are spent."""

    def __init__(self, run, start_epoch, minutes, checkpoint_minutes, eval_every, curve_images,
                 curve_k):
        super().__init__()
        self.run, self.start_epoch = run, start_epoch
        self.deadline = time.monotonic() + 60 * minutes
        self.checkpoint_seconds = 60 * checkpoint_minutes
        self.eval_every, self.curve_images, self.curve_k = eval_every, curve_images, curve_k
        self.last_save = time.monotonic()
        self.started = time.time()
        self.epoch_started = None
        self.done = start_epoch
        self.stop_requested = False
        # SIGTERM or Ctrl-C: finish the epoch, checkpoint, stop (nothing lost but the epoch).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_stop)

    def request_stop(self, signum, frame):
        self.stop_requested = True

    def on_epoch_begin(self, epoch, logs=None):
        self.model.kl_weight.assign(min(1.0, epoch / WARMUP_EPOCHS))
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.done = epoch + 1
        lr = float(self.model.optimizer.learning_rate)  # the schedule at the current step
        self.run.append("log.jsonl", {"epoch": self.done, "seconds": round(
            time.monotonic() - self.epoch_started, 2), "learning_rate": lr,
            "kl_weight": float(self.model.kl_weight.numpy()),
            **{k: round(float(v), 4) for k, v in (logs or {}).items()}})
        if self.done % self.eval_every == 0 or self.done == EPOCHS or self.done in (1, 4, 13, 40):
            self.evaluate()
        out_of_time = time.monotonic() > self.deadline or self.stop_requested
        if out_of_time or time.monotonic() - self.last_save > self.checkpoint_seconds:
            self.run.save(self.done)
            self.last_save = time.monotonic()
        if out_of_time:
            self.model.stop_training = True

    def evaluate(self):
        start = time.monotonic()
        weight = float(self.model.kl_weight.numpy())
        self.model.kl_weight.assign(1.0)
        nll = -log_likelihood(self.model, self.curve_images, k=self.curve_k)
        self.model.kl_weight.assign(weight)
        self.run.append("curve.jsonl", {"epoch": self.done, "k": self.curve_k,
            "test_examples": len(nll), "test_nll": round(float(nll.mean()), 3), "stderr": round(float(nll.std(ddof=1) / math.sqrt(len(nll))), 3),
            "eval_seconds": round(time.monotonic() - start, 1)})


def train(args):
    images = mnist("train")[:args.train_examples]
    steps_per_epoch = math.ceil(len(images) / BATCH)
    run = Run(args.run_dir, args.model, steps_per_epoch, len(images))
    done = run.restore()
    if done >= EPOCHS:
        print(json.dumps({"run": shown(args.run_dir), "epochs_done": done, "complete": True}))
        return
    # Another seed per segment: a resumed run does not replay the first segment's data order.
    seed = done
    tf_keras.utils.set_random_seed(seed)
    train_data = tfvae.data.from_arrays(images, BATCH, binarize="dynamic", seed=seed)
    curve = curve_subset(test_images(), args.curve_examples)
    segment = Segment(run, done, args.minutes, args.checkpoint_minutes, args.eval_every, curve,
                      args.k)
    start = time.time()
    run.model.fit(train_data, initial_epoch=done, epochs=EPOCHS, verbose=2 if args.verbose else 0,
                  callbacks=[tfvae.training.NonFiniteGuard(), segment])
    if int(run.epochs_done.numpy()) != segment.done:
        run.save(segment.done)
    record = {"first_epoch": done + 1, "last_epoch": segment.done,
              "epochs": segment.done - done, "wall_seconds": round(time.time() - start, 1),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
              "host_cpus": os.cpu_count(), "tensorflow": tf.__version__}
    run.append("segments.jsonl", record)
    print(json.dumps({"run": shown(args.run_dir), **record}))


def status(args):
    run = Run(args.run_dir, args.model, math.ceil(args.train_examples / BATCH),
              args.train_examples)
    done = run.restore()
    segments = run.read("segments.jsonl")
    curve = run.read("curve.jsonl")
    print(json.dumps({"run": shown(args.run_dir), "epochs_done": done, "of": EPOCHS,
                      "segments": len(segments),
                      "wall_hours": round(sum(s["wall_seconds"] for s in segments) / 3600, 2),
                      "last_curve_point": curve[-1] if curve else None,
                      "curve": shown(draw_curve(run, args.model)) if curve else None}))


def draw_curve(run, name):
    """The learning curve as curve.png in the run directory, on a scale that shows the last
    nats (the first epochs' hundreds of nats are off it, as the legend says)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = run.read("curve.jsonl")
    nlls = [c["test_nll"] for c in curve]
    top = PUBLISHED[name] + 12
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([c["epoch"] for c in curve], nlls, "o-",
              label=f"tfvae ({curve[-1]['test_examples']:,} test images, k = {curve[-1]['k']})"
                    + (f"; {sum(n > top for n in nlls)} early points above the axis"
                       if max(nlls) > top else ""))
    axis.axhline(PUBLISHED[name], color="gray", linestyle="--",
                 label=f"Burda et al. 2015: {PUBLISHED[name]}")
    axis.set(xscale="log", xlabel="epoch", ylabel="test NLL (nats)",
             ylim=(min(min(nlls), PUBLISHED[name]) - 1, top),
             title=f"{name}: the paper's schedule")
    axis.legend(fontsize=8, loc="upper right")
    figure.tight_layout()
    figure.savefig(run.dir / "curve.png", dpi=120)
    plt.close(figure)
    return run.dir / "curve.png"


def zoo_test_images():
    """The zoo's test set (ZOO_TEST): the one `tfvae evaluate` scores for a shipped VAE."""
    batches = tfvae.data.load("mnist", "test", batch_size=10_000, binarize="static", seed=0,
                              data_dir=SHARED_DATA / "tensorflow_datasets", download=False)
    return np.concatenate([b.numpy() for b in batches])


def finish(args):
    run = Run(args.run_dir, args.model, math.ceil(args.train_examples / BATCH),
              args.train_examples)
    done = run.restore()
    # The final figures on the zoo's test binarization, so that the card, `tfvae evaluate` and
    # the other shipped models agree on the bits; the learning curve keeps its own (TEST_SEED).
    test = zoo_test_images()[:args.test_examples]
    model = run.model
    model.kl_weight.assign(1.0)
    start = time.monotonic()
    nll = -log_likelihood(model, test, k=args.k)
    elbo = np.concatenate([model.compute_terms(tf.constant(test[i:i + 500]))["elbo"].numpy()
                           for i in range(0, len(test), 500)])
    segments = run.read("segments.jsonl")
    result = {"model": args.model, "epochs": done, "of": EPOCHS,
              "test_nll": round(float(nll.mean()), 3),
              "test_nll_stderr": round(float(nll.std(ddof=1) / math.sqrt(len(nll))), 3),
              "k": args.k, "test_examples": len(test), "test_set": ZOO_TEST,
              "test_elbo": round(float(elbo.mean()), 3),
              "active_units": model.active_units(test), "published_nll": PUBLISHED[args.model],
              "training_hours": round(sum(s["wall_seconds"] for s in segments) / 3600, 2),
              "segments": len(segments), "eval_seconds": round(time.monotonic() - start, 1)}
    if run.read("curve.jsonl"):
        result["curve"] = shown(draw_curve(run, args.model))
    if args.export:
        result["export"] = shown(ship(run, args, model, result, float(elbo.std())))
    print(json.dumps(result))
    run.append("evaluations.jsonl", result)


def ship(run, args, model, result, elbo_std):
    """Export the model as the next version of saved_models/<model>_mnist, enter it in the zoo's
    manifest, and write its card README, figures and the zoo's index (bench/train_zoo.py's)."""
    import train_zoo

    name = f"{args.model}_mnist"
    out = REPO / "saved_models"
    segments = run.read("segments.jsonl")
    command = f"python bench/burda.py --model {args.model} --run-dir {shown(args.run_dir)}"
    path = tfvae.export(model, out / name, data={
        "name": "mnist", "source": "TFDS mnist 3.0.1",
        "train": "60,000 images, dynamically binarized (fresh Bernoulli bits each epoch)",
        "test": f"10,000 images, one fixed binarization ({ZOO_TEST})"},
        metrics={"test_log_likelihood": -result["test_nll"],
                 "test_log_likelihood_stderr": result["test_nll_stderr"],
                 "test_log_likelihood_k": args.k,
                 "test_log_likelihood_examples": result["test_examples"],
                 "test_elbo": round(result["test_elbo"], 2), "test_elbo_std": round(elbo_std, 2),
                 "test_elbo_examples": result["test_examples"],
                 "active_units": result["active_units"],
                 "published_test_nll": PUBLISHED[args.model]},
        card={"training": {
            "command": f"{command} --minutes 120   # continue; then --finish --export",
            "epochs": result["epochs"], "schedule_epochs": EPOCHS, "batch_size": BATCH,
            "optimizer": "Adam(epsilon=1e-4), learning rate 1e-3 * 10^(-i/7) for 3^i epochs, "
                         "i = 0..7 (Burda et al. 2015)",
            "seed": "per segment: the epochs done when it started",
            "kl_warmup_epochs": WARMUP_EPOCHS,
            "wall_seconds": round(sum(s["wall_seconds"] for s in segments), 1),
            "eval_seconds": result["eval_seconds"],
            "machine": "2 shared CPU cores, no GPU (the development machine)",
            "segments": segments,
            "protocol": json.loads((run.dir / "protocol.json").read_text())}})
    train_zoo.update_manifest(out, name, path)
    train_zoo.write_figures(out / name, SHARED_DATA / "tensorflow_datasets")
    train_zoo.write_card_readme(out / name)
    train_zoo.write_index(out)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(PUBLISHED), required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=120,
                        help="this segment's budget (0: one epoch)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5)
    parser.add_argument("--eval-every", type=int, default=200,
                        help="learning-curve point every N epochs (and at 1, 4, 13, 40)")
    parser.add_argument("--status", action="store_true")
    parser.add_argument("--finish", action="store_true")
    parser.add_argument("--export", action="store_true", help="with --finish: ship the model")
    parser.add_argument("--k", type=int, default=5000, help="importance samples")
    parser.add_argument("--train-examples", type=int, default=60_000, help="for smoke runs")
    parser.add_argument("--curve-examples", type=int, default=1000)
    parser.add_argument("--test-examples", type=int, default=10_000, help="for --finish")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        raise SystemExit(f"needs MNIST in ../shared/data (not found at {SHARED_DATA})")
    (status if args.status else finish if args.finish else train)(args)


if __name__ == "__main__":
    main()
