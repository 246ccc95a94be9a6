"""Do the defaults give good models on data they were not tuned for? The one-layer VAE and the
two-layer chain (`hvae`), each built with nothing but its input shape, `compile()` and `fit`, no
callbacks, trained side by side for the same epochs on MNIST's grey levels (the zoo's models were
tuned on binarized MNIST), then scored on the test set: ELBO, per-layer KL and active units.

    python bench/defaults.py                         # 5 epochs, seed 0
    python bench/defaults.py --epochs 10 --seeds 0 1

Prints one JSON line: per seed and model the test ELBO, KL terms and active units, and per seed
the chain's ELBO minus the VAE's with its paired standard error over the test images.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

# tfvae before TensorFlow: importing it quiets TensorFlow's C++ start-up logs (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402


DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tensorflow_datasets"
MODELS = ("vae", "hvae")


def train_and_score(name, train, test, epochs, seed):
    tf_keras.utils.set_random_seed(seed)
    model = tfvae.models.get(name, input_shape=test.shape[1:])   # defaults only
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    args = parser.parse_args(argv)

    test = np.stack(list(tfvae.data.load("mnist", "test", batch_size=None, data_dir=args.data_dir,
                                         download=False).as_numpy_iterator()))
    runs = []
    for seed in args.seeds:
        train = tfvae.data.load("mnist", "train", batch_size=args.batch_size, seed=seed,
                                data_dir=args.data_dir, download=False)
        elbos, results = {}, {}
        for name in MODELS:
            elbos[name], results[name] = train_and_score(name, train, test, args.epochs, seed)
            print(name, seed, results[name], file=sys.stderr, flush=True)
        difference = elbos["hvae"] - elbos["vae"]
        runs.append({"seed": seed, **results,
                     "hvae_minus_vae": round(float(difference.mean()), 3),
                     "paired_stderr": round(float(difference.std(ddof=1)
                                                  / math.sqrt(len(difference))), 3)})
    print(json.dumps({"benchmark": "defaults", "data": "MNIST grey levels (not binarized), "
                      "Bernoulli likelihood, test set", "epochs": args.epochs,
                      "batch_size": args.batch_size, "runs": runs,
                      "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
