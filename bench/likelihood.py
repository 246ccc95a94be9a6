"""Test log-likelihood of the VAE family on binarized MNIST, under the papers' models and a
stated budget, as one JSON line.

Models (the papers' architectures):
- vae:  784-200-200-50, one stochastic layer (IWAE paper's one-layer VAE);
- iwae: the same model trained on the IWAE bound with --iwae-k samples (default 5);
- hvae: the two-layer model, 784-200-200-(100)-100-100-(50);
- lvae: the Ladder VAE, latents 64-32-16-8-4 over MLPs 512-256-128-64-32 (two layers each),
        batch norm, leaky ReLU;
- iaf:  the one-layer VAE's networks with an IAF posterior (--flow-steps steps, default 4).
--batch-norm puts batch normalization in vae, iwae and hvae (Sønderby et al. 2016 found deep
chains need it); compare hvae --batch-norm with vae --batch-norm.

The papers train for 3280 epochs (IWAE) or thousands (LVAE); this machine cannot, so the budget
is --epochs or --minutes of training (Adam 1e-3, batch 100), the same training aids for every
model: ReLU units (Burda et al.'s tanh trains far slower at such budgets, the two-layer model
worst) and KL warm-up over the first --warmup-fraction of the steps (Sønderby et al.). The
log-likelihood is importance-sampled with --k samples on a fixed random --test-examples of the
test images (the same for every run), and the JSON line keeps it per image so that runs compare pair by pair
(bench/likelihood_table.py). Dynamic MNIST is trained on fresh Bernoulli draws every epoch and
tested on one fixed binarization of the test set (seed 123); static is Larochelle's fixed
binarization (../shared/data/binarized_mnist.npz).

    python bench/likelihood.py --model hvae --batch-norm --epochs 30 --test-examples 1000
    python bench/likelihood.py --model vae --quick          # a smoke run, well under a minute
"""
import argparse
import hashlib
import json
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
from shared_data import SHARED_DATA  # noqa: E402


MNIST = (28, 28, 1)
# Published test NLL (nats, k = 5000), ../shared/REFERENCES.md; the IAF papers report no MLP
# model. The IWAE figure is for training with k = 50 (bench/likelihood_table.py says so).
PUBLISHED = {"dynamic": {"vae": 86.76, "iwae": 84.78, "hvae": 85.33, "lvae": 81.74},
             "static": {"vae": 88.71}}
MODELS = ("vae", "iwae", "hvae", "lvae", "iaf")


def build(name, args):
    activation = args.activation or "relu"
    one_layer = dict(input_shape=MNIST, latent_dim=50, hidden_units=(200, 200),
                     activation=activation)
    iwae_samples = args.iwae_k if name == "iwae" else 1
    if name in ("vae", "iwae") and args.batch_norm:
        # The VAE class has no batch norm; a one-layer HierarchicalVAE is the same model with
        # it (N(0, I) prior, closed-form KL), the baseline for hvae --batch-norm.
        return tfvae.models.HierarchicalVAE(input_shape=MNIST, latent_dims=(50,),
                                            hidden_units=((200, 200),), activation=activation,
                                            batch_norm=True, iwae_samples=iwae_samples)
    if name in ("vae", "iwae"):
        return tfvae.models.VAE(**one_layer, iwae_samples=iwae_samples)
    if name == "hvae":
        return tfvae.models.HierarchicalVAE(input_shape=MNIST, latent_dims=(100, 50),
                                            hidden_units=((200, 200), (100, 100)),
                                            activation=activation, batch_norm=args.batch_norm)
    if name == "lvae":
        return tfvae.models.LadderVAE(
            input_shape=MNIST, latent_dims=(64, 32, 16, 8, 4),
            hidden_units=((512, 512), (256, 256), (128, 128), (64, 64), (32, 32)),
            activation=args.activation or "leaky_relu", batch_norm=True)
    if name == "iaf":
        return tfvae.models.IAFVAE(**one_layer, flow_steps=args.flow_steps,
                                   flow_hidden_units=(200, 200), context_dim=50)
    raise ValueError(f"unknown model {name!r}")


class TimeBudget(tf_keras.callbacks.Callback):
    """Stops training once `seconds` have passed since the first step ended (so the one-off
    tracing and XLA compilation, 10-40 s here, does not count against a model)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.start = seconds, None

    def on_train_batch_end(self, batch, logs=None):
        if self.start is None:
            self.start = time.perf_counter()
        elif time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def datasets(args):
    if args.data == "dynamic":
        data_dir = SHARED_DATA / "tensorflow_datasets"
        train = tfvae.data.load("mnist", "train", batch_size=args.batch_size, binarize="dynamic",
                                data_dir=data_dir, take=args.train_examples)
        test = tfvae.data.load("mnist", "test", batch_size=None, binarize="static", seed=123,
                               data_dir=data_dir)
    else:
        train = tfvae.data.load("binarized_mnist", "train", batch_size=args.batch_size,
                                data_dir=SHARED_DATA, take=args.train_examples)
        test = tfvae.data.load("binarized_mnist", "test", batch_size=None, data_dir=SHARED_DATA)
    test_images = np.stack(list(test.as_numpy_iterator()))
    return train, test_images


def evaluate(model, images, k, batch_size):
    """Per-example importance-sampled log p(x), batch by batch (each chunked over k)."""
    return model.log_likelihood(images, num_samples=k, batch_size=batch_size).numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODELS, default="vae")
    parser.add_argument("--data", choices=("dynamic", "static"), default="dynamic")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training wall time (stops mid-epoch); with --epochs, both caps")
    parser.add_argument("--k", type=int, default=5000, help="importance samples for log p(x)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="evaluate on a fixed random N of the test images (default: all)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--iwae-k", type=int, default=5, help="training samples for --model iwae")
    parser.add_argument("--flow-steps", type=int, default=4, help="IAF steps for --model iaf")
    parser.add_argument("--warmup-fraction", type=float, default=0.25,
                        help="KL warm-up over this fraction of the budget's steps (0: none)")
    parser.add_argument("--batch-norm", action="store_true",
                        help="vae, iwae, hvae: batch normalization in every MLP (lvae always has it)")
    parser.add_argument("--activation", default=None,
                        help="hidden activation (default relu; leaky_relu for lvae)")
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 2000 training images, 1 epoch, k=100 on 200 test images")
    args = parser.parse_args()
    if args.batch_norm and args.model == "iaf":
        parser.error("--batch-norm is for vae, iwae and hvae (lvae always has it; iaf has none)")
    if args.quick:
        args.train_examples, args.epochs, args.minutes = 2000, 1, None
        args.k, args.test_examples = 100, 200
    if args.epochs is None and args.minutes is None:
        args.epochs = 10

    tf_keras.utils.set_random_seed(args.seed)
    train, test_images = datasets(args)
    if args.test_examples and args.test_examples < len(test_images):
        # A fixed random subset, the same for every run: the test sets' own order is not
        # random (the first 500 static test images are ~12 nats harder than the set).
        picked = np.sort(np.random.default_rng(0).choice(len(test_images), args.test_examples,
                                                         replace=False))
        test_images = test_images[picked]
    model = build(args.model, args)
    model.compile(optimizer=tf_keras.optimizers.Adam(args.lr))
    epochs = args.epochs if args.epochs is not None else 10_000
    callbacks = []
    if args.minutes is not None:
        callbacks.append(TimeBudget(60 * args.minutes))
    warmup_steps = None
    if args.warmup_fraction > 0:
        # The paper warms up over 200 of its epochs; here over a fraction of the budget, in
        # steps, estimated from the epoch count or, for a time budget, a first timed epoch.
        steps_per_epoch = int(sum(1 for _ in train))
        if args.epochs is not None:
            planned = args.epochs * steps_per_epoch
        else:
            planned = int(args.minutes * 60 / seconds_per_step(model, train))
        warmup_steps = max(1, int(args.warmup_fraction * planned))
        callbacks.append(tfvae.callbacks.KLWarmup(steps=warmup_steps))

    start = time.perf_counter()
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=0)
    train_seconds = time.perf_counter() - start
    steps = int(model.optimizer.iterations)

    start = time.perf_counter()
    test_elbo = float(np.mean(model.evaluate(test_images, batch_size=500, verbose=0,
                                             return_dict=True)["elbo"]))
    log_px = evaluate(model, test_images, args.k, batch_size=100)
    eval_seconds = time.perf_counter() - start
    nll = float(-log_px.mean())
    print(json.dumps({
        "model": args.model, "registry_name": model.registry_name,
        "config": {k: v for k, v in model.get_config().items() if k != "name"},
        "data": f"mnist-{args.data}", "batch_norm": bool(getattr(model, "batch_norm", False)),
        "lr": args.lr, "batch_size": args.batch_size,
        "budget": {"epochs": args.epochs, "minutes": args.minutes},
        "epochs_run": len(history.history["loss"]), "steps": steps,
        "train_seconds": round(train_seconds, 1), "kl_warmup_steps": warmup_steps,
        "test_examples": len(test_images), "k": args.k,
        # Which images (and which binarization of them) were tested: runs compare pair by
        # pair only on the same ones.
        "test_images_sha1": hashlib.sha1(np.ascontiguousarray(test_images)).hexdigest(),
        "test_nll": round(nll, 2),
        "test_nll_stderr": round(float(log_px.std(ddof=1) / np.sqrt(len(log_px))), 2),
        "test_neg_elbo": round(-test_elbo, 2),
        "bits_per_dim": round(nll / (784 * np.log(2)), 4),
        "active_units": model.active_units(test_images),
        "eval_seconds": round(eval_seconds, 1),
        "published_nll": PUBLISHED[args.data].get(args.model),
        # Per test image, so that two runs on the same images compare pair by pair
        # (bench/likelihood_table.py), which is far more precise than two means.
        "test_log_px": [round(float(v), 3) for v in log_px],
    }))


def seconds_per_step(model, train, steps=30):
    """Seconds per training step, timed on a throwaway clone so the real run stays untouched."""
    probe = type(model).from_config(model.get_config())
    probe.compile(optimizer=tf_keras.optimizers.Adam(1e-3))
    probe.fit(train.take(3), verbose=0)                      # compile outside the timing
    start = time.perf_counter()
    probe.fit(train.take(steps), verbose=0)
    return (time.perf_counter() - start) / steps


if __name__ == "__main__":
    main()
