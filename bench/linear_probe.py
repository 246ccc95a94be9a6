"""A linear probe of learned codes: the test accuracy of a logistic regression on a model's codes,
next to the same on PCA's codes of the same size and on the raw pixels, as Vincent et al. (2010)
and Rifai et al. (2011) judged their autoencoders' features. Prints one JSON line.

    python bench/linear_probe.py --models ae_mnist denoising_ae_mnist sparse_ae_mnist \
        contractive_ae_mnist
    python bench/linear_probe.py --models ae_mnist:1          # another shipped version
    python bench/linear_probe.py --models saved_models/my_ae  # any export, by its folder
    python bench/linear_probe.py --dataset digits --pca 8     # baselines only, in seconds

The classifier: features standardized (StandardScaler, fitted on the training codes), then
scikit-learn's LogisticRegression (multinomial, lbfgs, C=1.0, max_iter=1000 unless told),
fitted on the codes of all 60,000 MNIST training images and scored on the 10,000 test images.
lbfgs is deterministic, so a rerun on the same export gives the same figures. A model's code is
its export's `encode` output `mean`: the deterministic code of an autoencoder, the posterior mean
of a VAE. PCA is fitted on the training images (full SVD). Exports load with TensorFlow alone
(`tfvae.load`); MNIST is read from ../shared/data/tensorflow_datasets (or --data-dir).
"""
import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from shared_data import TFDS_DIR  # noqa: E402

C = 1.0
MAX_ITER = 1000
BATCH = 1000


def log(message):
    """Progress on stderr; stdout holds only the JSON line."""
    print(message, file=sys.stderr, flush=True)


def load_labelled(dataset="mnist", data_dir=TFDS_DIR):
    """(train images, train labels, test images, test labels): float32 images [n, h, w, c] in
    [0, 1] in the dataset's own order, int64 labels."""
    def split(name):
        batches = tfvae.data.load(dataset, name, batch_size=10_000, shuffle=False,
                                  with_labels=True, data_dir=str(data_dir), download=False)
        images, labels = zip(*((x.numpy(), y.numpy()) for x, y in batches))
        return np.concatenate(images), np.concatenate(labels)

    return (*split("train"), *split("test"))


def flat(images):
    return np.asarray(images, np.float32).reshape(len(images), -1)


def probe(train_features, train_labels, test_features, test_labels, c=C, max_iter=MAX_ITER):
    """Test accuracy of StandardScaler + multinomial LogisticRegression (lbfgs) fitted on the
    training features: {"accuracy", "features", "iterations", "converged", "seconds"}."""
    start = time.perf_counter()
    classifier = make_pipeline(StandardScaler(),
                               LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter))
    classifier.fit(flat(train_features), train_labels)
    accuracy = float(np.mean(classifier.predict(flat(test_features)) == test_labels))
    iterations = int(np.max(classifier[-1].n_iter_))
    return {"accuracy": round(accuracy, 4), "features": int(flat(train_features[:1]).shape[1]),
            "iterations": iterations, "converged": iterations < max_iter,
            "seconds": round(time.perf_counter() - start, 1)}


def pca_codes(train_images, test_images, k):
    """The k-dimensional PCA codes of the training and test images, PCA fitted on the training
    images (full SVD: deterministic)."""
    pca = PCA(n_components=k, svd_solver="full").fit(flat(train_images))
    return pca.transform(flat(train_images)), pca.transform(flat(test_images))


def model_codes(model, images, batch_size=BATCH):
    """A model's deterministic codes of `images`: the `encode` output `mean`, of an export
    (`tfvae.load`) or of a model in memory."""
    def encode(x):
        if isinstance(model, tfvae.models.LatentVariableModel):   # in memory: q(z|x)'s mean
            q = model.encode(x)
            return (q[0] if isinstance(q, list) else q).mean().numpy()   # hierarchies: z_1
        return model.encode(x)["mean"]                            # an export
    return np.concatenate([encode(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)]).astype(np.float32)


class Baselines:
    """PCA's and the raw pixels' probes on one dataset, each computed once."""

    def __init__(self, train_images, train_labels, test_images, test_labels, c=C,
                 max_iter=MAX_ITER):
        self.data = (train_images, train_labels, test_images, test_labels)
        self.c, self.max_iter = c, max_iter
        self._pca, self._pixels = {}, None

    def _probe(self, train_features, test_features):
        _, train_labels, _, test_labels = self.data
        return probe(train_features, train_labels, test_features, test_labels, self.c,
                     self.max_iter)

    def pixels(self):
        if self._pixels is None:
            self._pixels = self._probe(self.data[0], self.data[2])
            log(f"pixels: {self._pixels}")
        return self._pixels

    def pca(self, k):
        if k not in self._pca:
            self._pca[k] = self._probe(*pca_codes(self.data[0], self.data[2], k))
            log(f"pca {k}: {self._pca[k]}")
        return self._pca[k]

    def of_model(self, model):
        """The model's probe beside PCA's of the same size and the pixels'."""
        codes = self._probe(model_codes(model, self.data[0]), model_codes(model, self.data[2]))
        k = codes["features"]
        return {"code_dim": k, "codes": codes, "pca": self.pca(k), "pixels": self.pixels()}


def settings(c=C, max_iter=MAX_ITER):
    return {"scaler": "StandardScaler (fitted on the training features)",
            "classifier": f"LogisticRegression(solver='lbfgs', C={c}, max_iter={max_iter}), "
                          f"multinomial, scikit-learn defaults otherwise (tol 1e-4, L2)",
            "pca_fit": "PCA fitted on the training images, full SVD"}


def shown(path):
    """A path as the project writes it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def load_model(spec):
    """NAME, NAME:VERSION (a shipped model) or a folder."""
    name, _, version = spec.rpartition(":")
    if name and version.isdigit():
        return tfvae.load(name, version=int(version))
    return tfvae.load(spec)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=[],
                        help="shipped names (NAME or NAME:VERSION) or export folders")
    parser.add_argument("--pca", type=int, nargs="*", default=[],
                        help="further PCA sizes to probe (each model's own size is always done)")
    parser.add_argument("--dataset", default="mnist",
                        help="mnist (default) or digits (scikit-learn's 8x8, for a quick check)")
    parser.add_argument("--data-dir", default=str(TFDS_DIR))
    parser.add_argument("--C", type=float, default=C, help="inverse L2 regularization")
    parser.add_argument("--max-iter", type=int, default=MAX_ITER)
    parser.add_argument("--out", help="also append the JSON line to this file")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    train_x, train_y, test_x, test_y = load_labelled(args.dataset, args.data_dir)
    baselines = Baselines(train_x, train_y, test_x, test_y, args.C, args.max_iter)
    models = {}
    for spec in args.models:
        served = load_model(spec)
        if tuple(served.card["input_shape"]) != train_x.shape[1:]:
            raise SystemExit(f"{spec} takes images of shape {served.card['input_shape']}, "
                             f"{args.dataset} has {list(train_x.shape[1:])}")
        result = baselines.of_model(served)
        models[spec] = {"export": shown(served.path), "model": served.card["model"], **result}
        log(f"{spec}: {result['codes']}")
    pca = {str(k): baselines.pca(k) for k in sorted({*args.pca, *(m["code_dim"] for m in
                                                                 models.values())})}
    command = "python bench/linear_probe.py" + "".join(
        f" {flag} {' '.join(map(str, values))}" for flag, values in (
            ("--models", args.models), ("--pca", args.pca)) if values) + (
        f" --dataset {args.dataset}" if args.dataset != "mnist" else "") + (
        f" --C {args.C}" if args.C != C else "") + (
        f" --max-iter {args.max_iter}" if args.max_iter != MAX_ITER else "")
    line = json.dumps({
        "benchmark": "linear_probe", "command": command, "dataset": args.dataset,
        "train_examples": len(train_x), "test_examples": len(test_x),
        **settings(args.C, args.max_iter),
        "pixels": baselines.pixels(), "pca": pca,
        "models": {spec: {key: value for key, value in m.items() if key not in ("pca", "pixels")}
                   for spec, m in models.items()},
        "seconds": round(time.perf_counter() - start, 1)})
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()
