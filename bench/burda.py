"""The seed's papers on their budgets, in segments that survive interruption: Burda et al.
(2015), Table 1, VAE rows (the one-layer 784-200-200-50 VAE and the two-layer one with 100 and
50 latents); Sønderby et al.'s (2016) Ladder VAE (latents 64-32-16-8-4); and Kingma et al.'s
(2016) IAF posterior on the one-layer VAE's networks and protocol, so that the two compare image
by image. All on dynamically binarized MNIST.

    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --minutes 120   # start or continue
    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --status        # where it is, curve.png
    python bench/burda.py --model vae --run-dir bench/runs/vae_burda --finish        # evaluate, export
    python bench/burda.py --model ladder_vae --run-dir bench/runs/ladder_vae_sonderby
    python bench/burda.py --model iaf_vae --run-dir bench/runs/iaf_vae_burda

Protocols (PROTOCOLS; stated in the run's `protocol.json` and the model card):
- vae, hvae, iaf_vae: Burda et al.'s schedule, 3280 epochs, stage i = 0..7 lasting 3^i epochs
  at learning rate 1e-3 * 10^(-i/7), Adam (beta1 0.9, beta2 0.999, epsilon 1e-4); batch 100,
  not the paper's 20 (the step is compute-bound on 2 cores: the paper's batch would need ~15
  hours per model); ReLU units (the paper's tanh trained far slower in bench/likelihood.py's
  short runs) and a KL warm-up over the first 10 epochs (Sønderby et al. 2016), which keeps the
  two-layer model's upper layer from collapsing early; no batch norm. The IAF posterior has 2
  steps of MADEs with two hidden layers of 320 units (Kingma et al.'s ablation, Table 1);
- ladder_vae: Sønderby et al.'s, batch 256, 2000 epochs at 1e-3 with the KL warm-up over the
  first 200, batch norm, leaky rectifiers, gradients clipped to global norm 4 and then to 0.9
  each, batch-norm statistics over the whole training set before every evaluation; then their
  fine-tuning phase, shortened to 400 epochs: the IWAE bound with 10 samples and the rate times
  0.75 every 200 epochs (tfvae.training.start_fine_tuning);
- every schedule is in-graph, a function of the optimizer's step count, so a resumed run
  continues it exactly; the training images are the 60,000 MNIST training images, binarized
  afresh every epoch (tfvae.data.from_arrays(..., binarize="dynamic"));
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

The memory allocator matters on a virtual machine: with glibc's malloc, TensorFlow's per-step
buffers went back to the kernel and were faulted in again (about 100,000 page faults a second,
a sixth of the CPU time in the kernel), and the Ladder VAE's fine-tuning epochs took 50-57 s;
with tcmalloc preloaded (Debian's libtcmalloc-minimal4), 500 faults a second and 36 s an epoch
(epochs 2011-2017 against 2019-2022 of bench/runs/ladder_vae_sonderby/log.jsonl, same machine):

    LD_PRELOAD=libtcmalloc_minimal.so.4 nice -n 19 python bench/burda.py --model ladder_vae ...
"""
import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from shared_data import SHARED_DATA  # noqa: E402


MNIST = (28, 28, 1)
TEST_SEED = 123
#: the final evaluation's test set: the zoo's fixed binarization (bench/train_zoo.py)
ZOO_TEST = "tfvae.data.load('mnist', 'test', binarize='static', seed=0)"
BURDA_STAGES = 8                                     # i = 0..7
BURDA_EPOCHS = sum(3 ** i for i in range(BURDA_STAGES))   # 3280
ADAM = "Adam(beta1=0.9, beta2=0.999, epsilon=1e-4)"


class Protocol:
    """One model's training protocol: how to build it, its batch, epochs, KL warm-up and
    learning-rate schedule, and the published figure it is measured against."""

    def __init__(self, name, build, published, published_source, batch=100,
                 epochs=BURDA_EPOCHS, warmup_epochs=10, schedule="burda", clip=None, extra=None,
                 finetune=None, deviations=(), compare_with=None):
        self.name, self.build, self.published = name, build, published
        self.published_source = published_source
        self.batch, self.epochs, self.warmup_epochs = batch, epochs, warmup_epochs
        self.schedule, self.clip, self.extra = schedule, clip, extra or {}
        self.test_time_batch_norm = "batch_norm_statistics" in self.extra
        #: Sønderby et al.'s fine-tuning phase after `epochs`: {"epochs", "iwae_samples",
        #: "decay", "decay_epochs"} (tfvae.training.start_fine_tuning)
        self.finetune = finetune
        self.total_epochs = epochs + (finetune["epochs"] if finetune else 0)
        #: how this protocol departs from the paper's, for the card (not in protocol.json, which
        #: a run's checkpoints are tied to)
        self.deviations = list(deviations)
        #: a shipped model that `--finish` scores on the same test images, image by image
        self.compare_with = compare_with

    def start_fine_tuning(self, model, steps_per_epoch):
        """Switch `model` to the fine-tuning phase, which began at epoch `epochs`; returns the
        learning-rate schedule."""
        return tfvae.training.start_fine_tuning(
            model, steps_per_epoch, self.finetune["epochs"], self.finetune["iwae_samples"],
            self.finetune["decay"], self.finetune["decay_epochs"], learning_rate=1e-3,
            start_step=self.epochs * steps_per_epoch)

    def learning_rate(self, steps_per_epoch):
        """The schedule as a function of the optimizer's step count (so a resumed run continues
        it exactly)."""
        if self.schedule == "constant" and self.finetune:
            return tfvae.training.fine_tuning_schedule(
                1e-3, self.epochs * steps_per_epoch, steps_per_epoch, self.finetune["epochs"],
                self.finetune["decay"], self.finetune["decay_epochs"])
        if self.schedule == "constant":
            return 1e-3
        boundaries, epochs = [], 0
        for i in range(BURDA_STAGES - 1):
            epochs += 3 ** i
            boundaries.append(epochs * steps_per_epoch)
        values = [1e-3 * 10 ** (-i / 7) for i in range(BURDA_STAGES)]
        return tf_keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)

    def optimizer(self, steps_per_epoch):
        clip = dict(global_clipnorm=self.clip[0], clipvalue=self.clip[1]) if self.clip else {}
        return tf_keras.optimizers.Adam(self.learning_rate(steps_per_epoch), epsilon=1e-4, **clip)

    def record(self, model, train_examples):
        """What protocol.json keeps (the two Burda runs' files keep their original keys)."""
        schedule = ("3^i epochs at 1e-3 * 10^(-i/7), i = 0..7" if self.schedule == "burda"
                    else f"1e-3 for {self.epochs} epochs" + (", then the fine-tuning phase's"
                                                             if self.finetune else ""))
        optimizer = ADAM + (f", gradients clipped to global norm {self.clip[0]}, then to "
                            f"+-{self.clip[1]} each" if self.clip else "")
        return {"model": self.name, "config": model.get_config(), "batch": self.batch,
                "epochs": self.epochs, "warmup_epochs": self.warmup_epochs,
                "schedule": schedule, "optimizer": optimizer,
                "data": f"MNIST train ({train_examples} images), dynamic binarization every epoch",
                "test": f"MNIST test, one fixed binarization (seed {TEST_SEED})", **self.extra,
                **({"finetune": self.finetune} if self.finetune else {})}


def _vae():
    return tfvae.models.VAE(input_shape=MNIST, latent_dim=50, hidden_units=(200, 200))


def _hvae():
    # The paper's model: no batch norm; the warm-up is this script's own (per epoch,
    # warmup_epochs), not the model's default.
    return tfvae.models.HierarchicalVAE(input_shape=MNIST, latent_dims=(100, 50),
                                        hidden_units=((200, 200), (100, 100)), batch_norm=False,
                                        kl_warmup_steps=0)


def _ladder_vae():
    # Sønderby et al. (2016): 5 stochastic layers, MLPs of two dense layers, batch norm, leaky
    # rectifiers as their reference code ran them (slope 0.01).
    return tfvae.models.LadderVAE(input_shape=MNIST, latent_dims=(64, 32, 16, 8, 4),
                                  hidden_units=((512, 512), (256, 256), (128, 128), (64, 64),
                                                (32, 32)),
                                  activation="leaky_rectify", batch_norm=True, kl_warmup_steps=0)


def _iaf_vae():
    # Burda's one-layer networks with Kingma et al.'s (2016) posterior: 2 IAF steps of MADEs
    # with hidden layers of 320 units, their ablation's cheapest row that keeps most of the gain
    # of the deepest (Table 1: -81.17 against -84.08 without a flow and -80.80 at depth 8, width
    # 1920); the context h has the latent's size.
    return tfvae.models.IAFVAE(input_shape=MNIST, latent_dim=50, hidden_units=(200, 200),
                               flow_steps=2, flow_hidden_units=(320, 320), context_dim=50)


PROTOCOLS = {
    "vae": Protocol("vae", _vae, 86.76, "Burda et al. 2015"),
    "hvae": Protocol("hvae", _hvae, 85.33, "Burda et al. 2015"),
    # Sønderby et al. (2016): batch 256, 2000 epochs at 1e-3, warm-up over the first 200;
    # clipping and test-time batch-norm statistics from their reference code.
    "ladder_vae": Protocol(
        "ladder_vae", _ladder_vae, 81.74, "Sønderby et al. 2016", batch=256, epochs=2000,
        warmup_epochs=200, schedule="constant", clip=(4.0, 0.9),
        extra={"batch_norm_statistics": "before every evaluation, over one binarization of "
                                         "the 60,000 training images in one pass"},
        # Their fine-tuning, shortened: 2000 epochs with 10 Monte-Carlo and 10 importance
        # samples would take weeks here (the card says so).
        finetune={"epochs": 400, "iwae_samples": 10, "decay": 0.75, "decay_epochs": 200},
        deviations=[
            "fine-tuning shortened to 400 epochs with 10 importance samples and one Monte-Carlo "
            "sample (theirs: 10 of each, far longer; weeks of these two cores)",
            "scales as softplus + 1e-4 on the standard deviation (their code: softplus + 1e-5 "
            "on the variance)",
            "the precision-weighted merge of the paper's equations, not their code's "
            "only_mu_up option",
            "batch norm after every hidden Dense layer, not after the Dense layers that give "
            "the latents' parameters",
            "one run, no model selection on validation data",
            "learning rate 1e-3 for the 2000 epochs and at the start of fine-tuning, as we read "
            "the paper; not re-checked against its text for this run (the reference code's "
            "README example uses 2e-4, its default 2e-3)"]),
    # The one-layer VAE's protocol (vae_mnist version 3), so that the two compare image by image.
    "iaf_vae": Protocol(
        "iaf_vae", _iaf_vae, 86.843, "tfvae's vae_mnist version 3",
        deviations=["Burda et al.'s one-layer MLP networks (784-200-200-50) and schedule, not "
                    "Kingma et al.'s convolutional ResNet VAE, which two CPU cores cannot train "
                    "to its budget: the comparison is with vae_mnist, image by image",
                    "2 IAF steps of MADEs with hidden layers of 320 units (their ablation's "
                    "cheapest row that keeps most of the deepest flow's gain)"],
        compare_with="vae_mnist"),
}


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

    #: the checkpoint's data files at most this size (the repository keeps files small; the
    #: Ladder VAE's weights with Adam's slots are 22 MB); a restore reads any sharding
    max_shard_bytes = 10 * 2**20

    def __init__(self, directory, name, train_examples=60_000):
        self.dir = Path(directory)
        self.name, self.train_examples = name, train_examples
        self.protocol = PROTOCOLS[name]
        self.steps_per_epoch = math.ceil(train_examples / self.protocol.batch)
        self.model = self.protocol.build()
        self.model.compile(optimizer=self.protocol.optimizer(self.steps_per_epoch),
                           steps_per_execution=50)
        self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Create the optimizer's slots now, so that a restore fills them at once.
        self.model.optimizer.build(self.model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer,
                                              epochs_done=self.epochs_done)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.dir / "checkpoint"),
                                                  max_to_keep=1)

    def restore(self, read_only=False):
        """The epochs done, from the latest checkpoint. Unless `read_only` (--status, which may
        look at a run that is training), the logs are brought in line with the checkpoint."""
        protocol = self.protocol.record(self.model, self.train_examples)
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
        if not read_only:
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
        self.manager.save(checkpoint_number=epochs, options=tf.train.CheckpointOptions(
            experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(
                self.max_shard_bytes)))

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
                 curve_k, train_images):
        super().__init__()
        self.run, self.start_epoch, self.train_images = run, start_epoch, train_images
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
        self.model.kl_weight.assign(min(1.0, epoch / self.run.protocol.warmup_epochs))
        protocol = self.run.protocol
        if protocol.finetune and epoch == protocol.epochs:   # the phase begins mid-segment
            protocol.start_fine_tuning(self.model, self.run.steps_per_epoch)
        self.epoch_started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.done = epoch + 1
        lr = float(self.model.optimizer.learning_rate)  # the schedule at the current step
        self.run.append("log.jsonl", {"epoch": self.done, "seconds": round(
            time.monotonic() - self.epoch_started, 2), "learning_rate": lr,
            "kl_weight": float(self.model.kl_weight.numpy()),
            **{k: round(float(v), 4) for k, v in (logs or {}).items()}})
        if (self.done % self.eval_every == 0 or self.done == self.run.protocol.epochs
                or self.done == self.run.protocol.total_epochs or self.done in (1, 4, 13, 40)):
            self.evaluate()
        out_of_time = time.monotonic() > self.deadline or self.stop_requested
        if out_of_time or time.monotonic() - self.last_save > self.checkpoint_seconds:
            self.run.save(self.done)
            self.last_save = time.monotonic()
        if out_of_time:
            self.model.stop_training = True

    def evaluate(self):
        start = time.monotonic()
        set_test_statistics(self.run, self.train_images, seed=self.done)
        weight = float(self.model.kl_weight.numpy())
        self.model.kl_weight.assign(1.0)
        nll = -log_likelihood(self.model, self.curve_images, k=self.curve_k)
        self.model.kl_weight.assign(weight)
        self.run.append("curve.jsonl", {"epoch": self.done, "k": self.curve_k,
            "test_examples": len(nll), "test_nll": round(float(nll.mean()), 3), "stderr": round(float(nll.std(ddof=1) / math.sqrt(len(nll))), 3),
            "eval_seconds": round(time.monotonic() - start, 1)})


def set_test_statistics(run, train_images, seed):
    """Where the protocol says so (the Ladder VAE), batch norm's test-time statistics from one
    fresh binarization of the training images in one pass, as Sønderby et al. evaluated."""
    if run.protocol.test_time_batch_norm:
        bits = np.random.default_rng(seed).random(train_images.shape, dtype=np.float32)
        tfvae.training.set_batch_norm_statistics(run.model,
                                                 (bits < train_images).astype(np.float32))


def train(args):
    images = mnist("train")[:args.train_examples]
    run = Run(args.run_dir, args.model, len(images))
    done = run.restore()
    if done >= run.protocol.total_epochs:
        print(json.dumps({"run": shown(args.run_dir), "epochs_done": done, "complete": True}))
        return
    # Another seed per segment: a resumed run does not replay the first segment's data order.
    seed = done
    tf_keras.utils.set_random_seed(seed)
    train_data = tfvae.data.from_arrays(images, run.protocol.batch, binarize="dynamic", seed=seed)
    if run.protocol.finetune and done > run.protocol.epochs:   # resumed within the phase
        run.protocol.start_fine_tuning(run.model, run.steps_per_epoch)
    curve = curve_subset(test_images(), args.curve_examples)
    segment = Segment(run, done, args.minutes, args.checkpoint_minutes, args.eval_every, curve,
                      args.k, images)
    start = time.time()
    run.model.fit(train_data, initial_epoch=done, epochs=run.protocol.total_epochs,
                  verbose=2 if args.verbose else 0,
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
    run = Run(args.run_dir, args.model, args.train_examples)
    done = run.restore(read_only=True)
    segments = run.read("segments.jsonl")
    curve = run.read("curve.jsonl")
    print(json.dumps({"run": shown(args.run_dir), "epochs_done": done, "of": run.protocol.total_epochs,
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
    protocol = PROTOCOLS[name]
    top = protocol.published + 12
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([c["epoch"] for c in curve], nlls, "o-",
              label=f"tfvae ({curve[-1]['test_examples']:,} test images, k = {curve[-1]['k']})"
                    + (f"; {sum(n > top for n in nlls)} early points above the axis"
                       if max(nlls) > top else ""))
    axis.axhline(protocol.published, color="gray", linestyle="--",
                 label=f"{protocol.published_source}: {protocol.published}")
    axis.set(xscale="log", xlabel="epoch", ylabel="test NLL (nats)",
             ylim=(min(min(nlls), protocol.published) - 1, top),
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
    run = Run(args.run_dir, args.model, args.train_examples)
    done = run.restore()
    set_test_statistics(run, mnist("train")[:args.train_examples], seed=done)
    # The final figures on the zoo's test binarization, so that the card, `tfvae evaluate` and
    # the other shipped models agree on the bits; the learning curve keeps its own (TEST_SEED).
    test = zoo_test_images()[:args.test_examples]
    model = run.model
    model.kl_weight.assign(1.0)
    start = time.monotonic()
    nll = -log_likelihood(model, test, k=args.k)
    elbo = elbos(model, test)
    segments = run.read("segments.jsonl")
    result = {"model": args.model, "epochs": done, "of": run.protocol.total_epochs,
              "test_nll": round(float(nll.mean()), 3),
              "test_nll_stderr": round(float(nll.std(ddof=1) / math.sqrt(len(nll))), 3),
              "k": args.k, "test_examples": len(test), "test_set": ZOO_TEST,
              "test_elbo": round(float(elbo.mean()), 3),
              "active_units": model.active_units(test), "published_nll": run.protocol.published,
              "training_hours": round(sum(s["wall_seconds"] for s in segments) / 3600, 2),
              "segments": len(segments), "eval_seconds": round(time.monotonic() - start, 1)}
    if run.protocol.compare_with:
        reference = tfvae.models.from_pretrained(run.protocol.compare_with)
        result["paired"] = paired_comparison(model, reference, test, args.k, nll, elbo)
        result["paired"]["against"] = run.protocol.compare_with
    if run.read("curve.jsonl"):
        result["curve"] = shown(draw_curve(run, args.model))
    if args.export:
        result["export"] = shown(ship(run, args, model, result, float(elbo.std())))
    print(json.dumps(result))
    run.append("evaluations.jsonl", result)


def elbos(model, images, batch=500):
    """The per-image ELBO (nats), batch-norm in inference mode."""
    return np.concatenate([model.compute_terms(tf.constant(images[i:i + batch]))["elbo"].numpy()
                           for i in range(0, len(images), batch)])


def paired_comparison(model, reference, images, k, nll=None, elbo=None):
    """`model` against `reference` on the same images, image by image: the mean of the
    reference's NLL minus the model's (positive: the model is better) with its standard error,
    and each one's gap between the ELBO and the log-likelihood, -ELBO - NLL (the posterior's
    looseness; smaller is better), with theirs."""
    nll = -log_likelihood(model, images, k=k) if nll is None else nll
    elbo = elbos(model, images) if elbo is None else elbo
    reference_nll = -log_likelihood(reference, images, k=k)
    reference_elbo = elbos(reference, images)
    difference = reference_nll - nll
    gap, reference_gap = -elbo - nll, -reference_elbo - reference_nll
    stderr = lambda v: float(v.std(ddof=1) / math.sqrt(len(v)))   # noqa: E731
    return {"nll_difference": round(float(difference.mean()), 3),
            "nll_difference_stderr": round(stderr(difference), 3),
            "reference_nll": round(float(reference_nll.mean()), 3),
            "gap": round(float(gap.mean()), 3), "reference_gap": round(float(reference_gap.mean()), 3),
            "gap_difference_stderr": round(stderr(reference_gap - gap), 3),
            "k": k, "test_examples": len(images)}


def fine_tuning_text(finetune):
    """The fine-tuning phase of a protocol.json (Sønderby et al.'s), for the card."""
    return (f" ({finetune['epochs']} epochs on the IWAE bound with {finetune['iwae_samples']} "
            f"importance samples, from 1e-3 times {finetune['decay']} every "
            f"{finetune['decay_epochs']} epochs)")


def ship(run, args, model, result, elbo_std):
    """Export the model as the next version of saved_models/<model>_mnist, enter it in the zoo's
    manifest, and write its card README, figures and the zoo's index (bench/train_zoo.py's)."""
    import train_zoo

    name = f"{args.model}_mnist"
    out = REPO / "saved_models"
    segments = run.read("segments.jsonl")
    protocol = json.loads((run.dir / "protocol.json").read_text())
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
                 "published_test_nll": run.protocol.published,
                 "published_source": run.protocol.published_source,
                 **({"paired_with": result["paired"]} if "paired" in result else {})},
        # What `tfvae evaluate` scores by default: ZOO_TEST, at the card's k.
        test_protocol={"dataset": "mnist", "split": "test", "binarize": "static", "seed": 0,
                       "take": None, "k": args.k},
        card={"training": {
            "command": f"{command} --minutes 120   # continue; then --finish --export",
            "run_dir": shown(run.dir),
            "epochs": result["epochs"], "schedule_epochs": run.protocol.epochs,
            "batch_size": run.protocol.batch,
            "optimizer": protocol["optimizer"] + ", learning rate " + protocol["schedule"]
            + (fine_tuning_text(protocol["finetune"]) if "finetune" in protocol else ""),
            "seed": "per segment: the epochs done when it started",
            "kl_warmup_epochs": run.protocol.warmup_epochs,
            "wall_seconds": round(sum(s["wall_seconds"] for s in segments), 1),
            "eval_seconds": result["eval_seconds"],
            "machine": "2 shared CPU cores, no GPU (the development machine)",
            "segments": segments,
            "protocol": protocol,
            "deviations_from_the_paper": run.protocol.deviations}})
    train_zoo.update_manifest(out, name, path)
    train_zoo.write_figures(out / name, SHARED_DATA / "tensorflow_datasets")
    train_zoo.write_card_readme(out / name)
    train_zoo.write_index(out)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(PROTOCOLS), required=True)
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
