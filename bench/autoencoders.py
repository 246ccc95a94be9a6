"""PCA against the autoencoders on MNIST: test reconstruction MSE per pixel for each code size.

PCA is the best any linear map of rank k can do in squared error, so the linear AE
(activation=None, a fixed unit-scale Gaussian likelihood: half the squared error) should come
close to it from above, and the deep models should go below it. Prints one JSON line.

    python bench/autoencoders.py                  # k in (2, 8, 32), full MNIST
    python bench/autoencoders.py --quick          # a tiny run to check the plumbing

Data: MNIST in TFDS format under ../shared/data/tensorflow_datasets (relative to the repo), or
--data-dir.
"""
import argparse
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
from sklearn.decomposition import PCA  # noqa: E402
from shared_data import TFDS_DIR  # noqa: E402


DEEP_MODELS = ("ae", "denoising_ae", "sparse_ae", "contractive_ae")


def load_arrays(data_dir, take=None):
    """MNIST train and test images as float32 arrays [n, 28, 28, 1] in [0, 1]."""
    def array(split):
        ds = tfvae.data.load("mnist", split, batch_size=10_000, shuffle=False,
                             data_dir=str(data_dir), download=False, take=take)
        return np.concatenate([batch.numpy() for batch in ds])

    return array("train"), array("test")


def per_pixel_mse(a, b):
    return float(np.mean(np.square(a.reshape(len(a), -1) - b.reshape(len(b), -1))))


def pca_mse(train, test, k):
    pca = PCA(n_components=k, random_state=0).fit(train.reshape(len(train), -1))
    flat = test.reshape(len(test), -1)
    return per_pixel_mse(pca.inverse_transform(pca.transform(flat)), flat)


def model_mse(model, test):
    return float(model.evaluate(test, batch_size=1000, verbose=0, return_dict=True)["mse"])


def log(message):
    """Progress on stderr; stdout holds only the JSON line."""
    print(message, file=sys.stderr, flush=True)


def train(model, train_images, epochs, learning_rate, batch_size, seed):
    """Adam with a cosine decay to zero over the run: the decay settles the last few percent."""
    steps = epochs * int(np.ceil(len(train_images) / batch_size))
    schedule = tf_keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(optimizer=tf_keras.optimizers.Adam(schedule))
    tf_keras.utils.set_random_seed(seed)
    model.fit(train_images, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(TFDS_DIR))
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the deep models")
    parser.add_argument("--linear-epochs", type=int, default=20, help="epochs of the linear AE")
    parser.add_argument("--linear-lr", type=float, default=3e-3)
    parser.add_argument("--lr", type=float, default=1e-3, help="deep models' learning rate")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden-units", type=int, nargs="+", default=[512, 256])
    parser.add_argument("--models", nargs="+", default=list(DEEP_MODELS), choices=DEEP_MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training images, k=2 only, 1 epoch: checks the plumbing")
    args = parser.parse_args(argv)
    if args.quick:
        args.ks, args.epochs, args.linear_epochs = [2], 1, 1

    start = time.time()
    train_images, test_images = load_arrays(args.data_dir, take=2000 if args.quick else None)
    shape = train_images.shape[1:]
    results, seconds = {}, {}
    for k in args.ks:
        row = {"pca": pca_mse(train_images, test_images, k)}
        log(f"k={k} pca {row['pca']:.6f}")
        tf_keras.utils.set_random_seed(args.seed)
        linear = tfvae.models.get("ae", input_shape=shape, latent_dim=k, hidden_units=(),
                                  activation=None, likelihood="gaussian", likelihood_scale=1.0)
        tic = time.time()
        train(linear, train_images, args.linear_epochs, args.linear_lr, args.batch_size, args.seed)
        seconds[f"linear_ae_k{k}"] = round(time.time() - tic, 1)
        row["linear_ae"] = model_mse(linear, test_images)
        log(f"k={k} linear_ae {row['linear_ae']:.6f} ({seconds[f'linear_ae_k{k}']} s)")
        for name in args.models:
            tf_keras.utils.set_random_seed(args.seed)
            model = tfvae.models.get(name, input_shape=shape, latent_dim=k,
                                     hidden_units=tuple(args.hidden_units))
            tic = time.time()
            train(model, train_images, args.epochs, args.lr, args.batch_size, args.seed)
            seconds[f"{name}_k{k}"] = round(time.time() - tic, 1)
            row[name] = model_mse(model, test_images)
            log(f"k={k} {name} {row[name]:.6f} ({seconds[f'{name}_k{k}']} s)")
        row["linear_ae_over_pca"] = row["linear_ae"] / row["pca"] - 1
        results[str(k)] = {key: round(value, 6) for key, value in row.items()}
    print(json.dumps({
        "benchmark": "autoencoders",
        "dataset": "mnist" + (" (quick: 2000 images)" if args.quick else ""),
        "metric": "test reconstruction MSE per pixel (likelihood mean vs image in [0, 1])",
        "settings": {"epochs": args.epochs, "linear_epochs": args.linear_epochs, "lr": args.lr,
                     "linear_lr": args.linear_lr, "batch_size": args.batch_size,
                     "hidden_units": args.hidden_units, "seed": args.seed,
                     "deep_models": "model defaults (bernoulli likelihood, relu)",
                     "linear_ae": "hidden_units=(), activation=None, gaussian scale 1"},
        "results": results, "train_seconds": seconds,
        "total_seconds": round(time.time() - start, 1),
        "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main()
