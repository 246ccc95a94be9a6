"""Do the defaults give good models on data they were not tuned for? The one-layer VAE and the
two-layer chain (`hvae`; `--chains` adds the Ladder VAE), each built with nothing but its input
shape, `compile()` and `fit`, no callbacks, trained side by side for the same epochs on MNIST's
grey levels (the zoo's models were tuned on binarized MNIST) or scikit-learn's 8x8 digits, then
scored on the test set: ELBO, per-layer KL and active units.

    python bench/defaults.py                         # MNIST grey levels, 5 epochs, seed 0
    python bench/defaults.py --epochs 10 --seeds 0 1
    python bench/defaults.py --dataset digits --epochs 200 --seeds 0 1
    python bench/defaults.py --chains hvae ladder_vae --chain-batch-norm off   # the ablation

Prints one JSON line: per seed and model the test ELBO, KL terms and active units, and per seed
each chain's ELBO minus the VAE's with its paired standard error over the test images.
tests/test_hierarchical.py runs `compare` for three epochs as the defaults' quality test.
"""
import argparse
import json
import math
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


CHAINS = ("hvae", "ladder_vae")


def train_and_score(name, train, test, epochs, seed, **arguments):
    tf_keras.utils.set_random_seed(seed)
    model = tfvae.models.get(name, input_shape=test.shape[1:], **arguments)  # defaults, or these
    model.compile()
    start = time.monotonic()
    model.fit(train, epochs=epochs, verbose=0)
    seconds = time.monotonic() - start
    terms = [model.compute_terms(tf.constant(test[i:i + 500])) for i in range(0, len(test), 500)]
    per_image = {key: np.concatenate([t[key].numpy() for t in terms])
                 for key in terms[0] if key == "elbo" or key.startswith("kl")}
    return per_image["elbo"], {
        "test_elbo": round(float(per_image["elbo"].mean()), 3),
        **{key: round(float(v.mean()), 3) for key, v in per_image.items() if key != "elbo"},
        "active_units": model.active_units(test), "train_seconds": round(seconds, 1)}


def compare(epochs, seed, dataset="mnist", data_dir=str(TFDS_DIR), batch_size=128,
            chains=("hvae",), chain_arguments=None):
    """The VAE and `chains` trained for `epochs` on `dataset`'s grey levels, each chain built
    with `chain_arguments` besides its input shape: the JSON line's run."""
    source = dict(data_dir=data_dir, download=False) if dataset == "mnist" else {}
    test = np.stack(list(tfvae.data.load(dataset, "test", batch_size=None,
                                         **source).as_numpy_iterator()))
    train = tfvae.data.load(dataset, "train", batch_size=batch_size, seed=seed, **source)
    elbos, run = {}, {"seed": seed}
    for name in ("vae", *chains):
        arguments = {} if name == "vae" else chain_arguments or {}
        elbos[name], run[name] = train_and_score(name, train, test, epochs, seed, **arguments)
        print(name, seed, run[name], file=sys.stderr, flush=True)
    for name in chains:
        difference = elbos[name] - elbos["vae"]
        run[f"{name}_minus_vae"] = round(float(difference.mean()), 3)
        run[f"{name}_minus_vae_stderr"] = round(float(difference.std(ddof=1)
                                                      / math.sqrt(len(difference))), 3)
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=str(TFDS_DIR))
    parser.add_argument("--chains", nargs="+", choices=CHAINS, default=["hvae"])
    parser.add_argument("--chain-batch-norm", choices=("default", "off"), default="default",
                        help="off: the chains without their default batch norm (the ablation)")
    args = parser.parse_args(argv)

    chain_arguments = {} if args.chain_batch_norm == "default" else {"batch_norm": False}
    runs = [compare(args.epochs, seed, args.dataset, args.data_dir, args.batch_size,
                    args.chains, chain_arguments) for seed in args.seeds]
    print(json.dumps({"benchmark": "defaults", "data": f"{args.dataset} grey levels (not "
                      "binarized), Bernoulli likelihood, test set", "epochs": args.epochs,
                      "chain_arguments": chain_arguments,
                      "batch_size": args.batch_size, "runs": runs,
                      "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
