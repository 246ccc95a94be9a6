"""Train the pretrained zoo in saved_models/: every registered model on MNIST, small enough that
each export is a few MB, evaluated on the MNIST test set and exported with its model card.

    python bench/train_zoo.py                       # every model, the epochs of ZOO below
    python bench/train_zoo.py --models vae ae       # some of them
    python bench/train_zoo.py --models vae --epochs 1 --out /tmp/zoo   # a timing run
    python bench/train_zoo.py --cards-only          # rewrite READMEs and figures from the exports

Run from the repository root; MNIST is read from ../shared/data/tensorflow_datasets (or
--data-dir), never downloaded. Data and evaluation:
- VAEs (vae, hvae, ladder_vae, iaf_vae): Bernoulli likelihood, trained on dynamically binarized
  MNIST (fresh bits every epoch), tested on one fixed binarization of the 10,000 test images
  (binarize="static", seed 0): the ELBO on all of them and the importance-sampled
  log-likelihood with --k samples on the first --ll-examples.
- Autoencoders (ae, denoising_ae, sparse_ae, contractive_ae): grey levels in [0, 1] with a
  Bernoulli (cross-entropy) likelihood; the test metric is the per-pixel squared error of the
  reconstruction on the 10,000 test images. Their code density for `sample` is a 10-component
  Gaussian mixture fitted to the codes of the first 10,000 training images.

Each model goes to saved_models/<model>_mnist/1/ (replaced when --overwrite) with the figures
in its card, and saved_models/<model>_mnist/README.md; saved_models/README.md gets the table.
"""
import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MNIST = (28, 28, 1)
VAES = ("vae", "hvae", "ladder_vae", "iaf_vae")

# name -> (constructor arguments, epochs, KL warm-up epochs). Sizes keep each export under 3.5 MB.
# Epochs: what fitted ~25 minutes of training in all on the shared 2-core machine (an epoch
# took 3-18 s there depending on the other jobs; a contractive one 17-70 s, without XLA).
# The VAEs share one budget and the same aids (25 epochs, the first 5 warming the KL up), so
# their cards compare; the hierarchies have batch norm, which keeps the chain's upper layer
# active at such budgets (bench/likelihood.py measures both) and the Ladder VAE's paper uses.
ZOO = {
    "vae": (dict(latent_dim=32, hidden_units=(256, 128)), 25, 5),
    "hvae": (dict(latent_dims=(32, 16), hidden_units=((256, 128), (64, 64)), batch_norm=True),
             25, 5),
    "ladder_vae": (dict(latent_dims=(32, 16, 8), hidden_units=((256, 128), (64, 64), (32, 32)),
                        batch_norm=True), 25, 5),
    "iaf_vae": (dict(latent_dim=32, hidden_units=(256, 128), flow_steps=2,
                     flow_hidden_units=(64, 64), context_dim=32), 25, 5),
    "ae": (dict(latent_dim=32, hidden_units=(256, 128)), 12, 0),
    "denoising_ae": (dict(latent_dim=32, hidden_units=(256, 128), corruption="masking",
                          noise_level=0.25), 12, 0),
    "sparse_ae": (dict(latent_dim=32, hidden_units=(256, 128), sparsity_weight=1.0, rho=0.05),
                  12, 0),
    "contractive_ae": (dict(latent_dim=16, hidden_units=(256, 128), contractive_weight=0.1), 12, 0),
}
# XLA took over 5 minutes to compile the contractive penalty's batch_jacobian (then stopped);
# without it a step takes 0.04-0.15 s.
NO_XLA = {"contractive_ae"}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
SEED = 0


def data_description(name, args):
    if name in VAES:
        return {"name": "mnist", "source": "TFDS mnist 3.0.1",
                "train": "60,000 images, dynamically binarized (fresh Bernoulli bits each epoch)",
                "test": "10,000 images, one fixed binarization (tfvae.data.load('mnist', 'test', "
                        "binarize='static', seed=0))"}
    return {"name": "mnist", "source": "TFDS mnist 3.0.1",
            "train": "60,000 images, grey levels in [0, 1]",
            "test": "10,000 images, grey levels in [0, 1]"}


def evaluate_vae(model, test_images, args):
    import tensorflow as tf

    elbos = []
    for i in range(0, len(test_images), 500):
        terms = model.compute_terms(tf.constant(test_images[i:i + 500]))
        elbos.append(terms["elbo"].numpy())
    elbos = np.concatenate(elbos)
    start = time.perf_counter()
    subset = test_images[:args.ll_examples]
    ll = model.log_likelihood(subset, num_samples=args.k).numpy()
    return {
        "test_elbo": round(float(elbos.mean()), 2),
        "test_elbo_std": round(float(elbos.std()), 2),
        "test_elbo_examples": int(len(elbos)),
        "test_log_likelihood": round(float(ll.mean()), 2),
        "test_log_likelihood_k": int(args.k),
        "test_log_likelihood_examples": int(len(ll)),
        "log_likelihood_seconds": round(time.perf_counter() - start, 1),
    }


def evaluate_ae(model, test_images):
    import tensorflow as tf

    errors = []
    for i in range(0, len(test_images), 500):
        x = test_images[i:i + 500]
        errors.append(((model(tf.constant(x)).numpy() - x) ** 2).reshape(len(x), -1).mean(1))
    errors = np.concatenate(errors)
    return {"test_mse": round(float(errors.mean()), 6),
            "test_mse_std": round(float(errors.std()), 6),
            "test_mse_examples": int(len(errors))}


def test_set(name, data_dir):
    from tfvae import data

    binarize = "static" if name in VAES else None
    batches = data.load("mnist", "test", batch_size=1000, binarize=binarize, seed=0,
                        data_dir=data_dir, download=False)
    return np.concatenate([b.numpy() for b in batches])


def train_one(name, args):
    import tf_keras

    import tfvae
    from tfvae import callbacks as tfvae_callbacks
    from tfvae import data

    kwargs, default_epochs, warmup = ZOO[name]
    epochs = args.epochs or default_epochs
    warmup = min(warmup, max(epochs - 1, 0))
    tf_keras.utils.set_random_seed(SEED)
    model = tfvae.models.get(name, input_shape=MNIST, **kwargs)
    model.compile(optimizer=tf_keras.optimizers.Adam(LEARNING_RATE),
                  **({"jit_compile": False} if name in NO_XLA else {}))
    binarize = "dynamic" if name in VAES else None
    train = data.load("mnist", "train", batch_size=BATCH_SIZE, binarize=binarize, seed=SEED,
                      data_dir=args.data_dir, download=False)
    callbacks = [tfvae_callbacks.KLWarmup(epochs=warmup)] if warmup else []
    print(f"[{name}] {model.count_params():,} parameters, {epochs} epochs", flush=True)
    start = time.perf_counter()
    history = model.fit(train, epochs=epochs, callbacks=callbacks, verbose=2)
    train_seconds = time.perf_counter() - start
    if hasattr(model, "fit_latent_density"):
        density_data = data.load("mnist", "train", batch_size=1000, take=10_000, shuffle=False,
                                 data_dir=args.data_dir, download=False)
        model.fit_latent_density(density_data, kind="gmm", components=10, seed=SEED)
    test_images = test_set(name, args.data_dir)
    start = time.perf_counter()
    metrics = (evaluate_vae(model, test_images, args) if name in VAES
               else evaluate_ae(model, test_images))
    eval_seconds = time.perf_counter() - start
    command = f"python bench/train_zoo.py --models {name}" + (
        f" --epochs {args.epochs}" if args.epochs else "") + (
        f" --k {args.k} --ll-examples {args.ll_examples}" if name in VAES else "")
    training = {"command": command, "epochs": epochs, "batch_size": BATCH_SIZE,
                "optimizer": f"Adam({LEARNING_RATE})", "seed": SEED,
                "kl_warmup_epochs": warmup or None, "xla": name not in NO_XLA,
                "wall_seconds": round(train_seconds, 1),
                "eval_seconds": round(eval_seconds, 1),
                "machine": "2 shared CPU cores, no GPU (the development machine)",
                "final_train_loss": round(float(history.history["loss"][-1]), 3)}
    model_dir = Path(args.out) / f"{name}_mnist"
    if model_dir.exists():
        if not args.overwrite:
            raise SystemExit(f"{model_dir} exists: pass --overwrite to replace it")
        shutil.rmtree(model_dir)
    path = tfvae.export(model, model_dir, data=data_description(name, args), metrics=metrics,
                        card={"training": training}, version=1)
    update_manifest(args.out, model_dir.name, path)
    print(json.dumps({"model": name, "export": str(path), "metrics": metrics,
                      "wall_seconds": training["wall_seconds"]}), flush=True)
    return path


def update_manifest(out, name, path):
    """Enter the export at `path` (a version folder) as the shipped model `name` in out/zoo.json,
    the manifest by which `tfvae.load(name)` finds it (other folders in `out` are not shipped)."""
    from tfvae.exporting import CARD_FILENAME
    from tfvae.loading import MANIFEST

    card = json.loads((Path(path) / "assets" / CARD_FILENAME).read_text())
    manifest_file = Path(out) / MANIFEST
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {
        "description": "The shipped models: only these load by name (tfvae.load(NAME)); any other "
                       "folder here is not part of the zoo. Written by bench/train_zoo.py."}
    manifest.setdefault("models", {})
    manifest["models"][name] = {
        "model": card["model"], "class": card["class"],
        "description": f"{card['class']} trained on MNIST for {card['training']['epochs']} epochs; "
                       f"train data: {card['data']['train']}. Card: {name}/README.md",
        "input_shape": card["input_shape"], "dataset": card["data"]["name"],
        # A new version adds to the shipped ones (TF Serving serves them side by side).
        "versions": sorted({*manifest["models"].get(name, {}).get("versions", []),
                            int(Path(path).name)})}
    manifest["models"] = dict(sorted(manifest["models"].items()))
    # Written whole then renamed: an interrupted run leaves the old manifest, never half of one.
    partial = manifest_file.with_name(MANIFEST + ".partial")
    text = json.dumps(manifest, indent=2)
    # Lists of numbers (input_shape, versions) on one line each, as they read best.
    text = re.sub(r"\[\s*((?:-?\d+,\s*)*-?\d+)\s*\]",
                  lambda m: "[" + ", ".join(re.split(r",\s*", m.group(1))) + "]", text)
    partial.write_text(text + "\n")
    os.replace(partial, manifest_file)


# ---- model cards and figures, from the exports alone ---------------------------------------
def size_of(folder):
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def card_of(model_dir):
    from tfvae.loading import load

    return load(model_dir).card


def images_text(count):
    """The test images an estimate used: "all 10,000 images" or "first 500 images"."""
    return "all 10,000 images" if count == 10_000 else f"first {count:,} images"


def duration_text(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def metric_text(card):
    m = card["metrics"]
    if "test_elbo" in m:
        return (f"test ELBO {m['test_elbo']:.2f} nats ({m['test_elbo_examples']:,} images); "
                f"log-likelihood {m['test_log_likelihood']:.2f} nats (k = "
                f"{m['test_log_likelihood_k']}, {images_text(m['test_log_likelihood_examples'])})")
    return f"test MSE {m['test_mse']:.5f} per pixel ({m['test_mse_examples']:,} images)"


def write_figures(model_dir, data_dir):
    from tfvae import plotting
    from tfvae.loading import load

    served = load(model_dir)
    name = served.card["model"]
    plotting.plot_samples(served, num=64, path=Path(model_dir) / "samples.png",
                          title=f"{name}: samples, seeds 0..63")
    x = test_set(name, data_dir)[:10]
    plotting.plot_reconstructions(served, x, path=Path(model_dir) / "reconstructions.png",
                                  title=f"{name}: test inputs (top), reconstructions (bottom)")


def write_card_readme(model_dir):
    card = card_of(model_dir)
    name, t, m = card["model"], card["training"], card["metrics"]
    version = max(int(p.name) for p in Path(model_dir).iterdir() if p.name.isdigit())
    config = {k: v for k, v in card["config"].items() if k != "name"}
    lines = [
        f"# {name}_mnist: {card['class']} trained on MNIST", "",
        f"`tfvae.load(\"{name}_mnist\")` loads it (TensorFlow only); version {version} is in "
        f"`{version}/`, a SavedModel with the `encode`, `decode`, `sample`, `reconstruct` "
        f"(also `serving_default`) and `score` signatures; this card is also "
        f"`{version}/assets/tfvae_card.json`.", "",
        "## Data", "",
        f"- train: {card['data']['train']}",
        f"- test: {card['data']['test']}", "",
        "## Configuration", "",
        f"`tfvae.models.get(\"{name}\", **config)` with:", "",
        "| argument | value |", "| --- | --- |",
        *(f"| `{key}` | `{json.dumps(value)}` |" for key, value in config.items()), "",
        "## Training", "",
        "From the repository root (reads MNIST from `../shared/data/tensorflow_datasets`):", "",
        "```sh", t["command"], "```", "",
        f"{t['epochs']} epochs, batch {t['batch_size']}, {t['optimizer']}, seed {t['seed']}"
        + (f", KL warm-up over {t['kl_warmup_epochs']} epochs" if t.get("kl_warmup_epochs") else "")
        + f"; training took {t['wall_seconds']:.0f} s of wall time on {t['machine']}, "
        f"the evaluation {t['eval_seconds']:.1f} s.", "",
        "## Test metrics", "",
    ]
    if "test_elbo" in m:
        lines += [
            "| metric | value (nats per image) | on |", "| --- | --- | --- |",
            f"| ELBO | {m['test_elbo']:.2f} (std {m['test_elbo_std']:.1f}) | "
            f"{m['test_elbo_examples']:,} test images |",
            f"| importance-sampled log p(x), k = {m['test_log_likelihood_k']} | "
            f"{m['test_log_likelihood']:.2f}"
            + (f" ± {m['test_log_likelihood_stderr']:.2f}" if "test_log_likelihood_stderr" in m
               else "") + f" | {images_text(m['test_log_likelihood_examples'])} |", ""]
        if "published_test_nll" in m:   # a reproduction of the paper (bench/burda.py)
            run = f"bench/runs/{name}_burda"
            lines += [
                f"Burda et al. (2015, Table 1) report a test NLL of {m['published_test_nll']} "
                f"nats for this model; this one is at {-m['test_log_likelihood']:.2f} "
                f"({-m['test_log_likelihood'] - m['published_test_nll']:+.2f} nats), after "
                f"{t['epochs']} of the paper's {t['schedule_epochs']}-epoch schedule. Active "
                f"units per stochastic layer: {m['active_units']}. The learning curve "
                f"(k = 5000 on a fixed 1,000 test images, another binarization) is "
                f"`{run}/curve.png`; every segment's epochs and wall time are in "
                f"`{run}/segments.jsonl` and in this card.", ""]
        else:
            lines += ["A short training of small networks: the papers' models train for "
                      "thousands of epochs (REFERENCES.md), so these are not their figures.", ""]
    else:
        lines += [
            "| metric | value | on |", "| --- | --- | --- |",
            f"| per-pixel squared error of the reconstruction | {m['test_mse']:.5f} (std over "
            f"images {m['test_mse_std']:.5f}) | {m['test_mse_examples']:,} test images |", ""]
    if "sampling" in card:
        lines += ["## Sampling", "", card["sampling"] + ".", ""]
    lines += ["## Figures", "",
              "![samples](samples.png)", "", "![reconstructions](reconstructions.png)", "",
              f"Export size: {size_of(Path(model_dir) / str(version)) / 1e6:.1f} MB.", ""]
    (Path(model_dir) / "README.md").write_text("\n".join(lines))


def write_index(out):
    rows = []
    for model_dir in sorted(p for p in Path(out).iterdir() if p.is_dir() and p.name.endswith("_mnist")):
        card = card_of(model_dir)
        t = card["training"]
        rows.append(f"| [`{model_dir.name}`]({model_dir.name}/README.md) | {card['class']} | "
                    f"{t['epochs']} | {duration_text(t['wall_seconds'])} | {metric_text(card)} | "
                    f"{size_of(model_dir) / 1e6:.1f} MB |")
    text = "\n".join([
        "# Pretrained models", "",
        "Every model of the zoo trained on MNIST by `bench/train_zoo.py` (the exact command of "
        "each is in its card), exported for TF Serving. Load one by name with TensorFlow alone:",
        "", "```python", "import tfvae", "", "model = tfvae.load(\"vae_mnist\")", 
        "images = model.sample(16)[\"x\"]            # [16, 28, 28, 1]",
        "scores = model.run(\"score\", images)[\"elbo\"]  # VAEs: ELBO per image, in nats", "```", "",
        'Only the models listed in [`zoo.json`](zoo.json), the zoo\'s manifest (each name\'s family, input shape, dataset and the versions shipped), load by name, and only those versions: anything else in this folder, such as an export of your own, is not taken for a shipped model and loads by its path (`tfvae.load("saved_models/my_vae")`). `tfvae.loading.shipped_models()` lists the names. After a non-editable `pip install .` this folder is not installed: load by path from a clone (`tfvae.load("path/to/tfvae/saved_models/vae_mnist")`) or set `TFVAE_SAVED_MODELS=path/to/tfvae/saved_models`.',
        "",
        "VAEs are trained on dynamically binarized MNIST and tested on a fixed binarization of "
        "the test set; autoencoders on grey levels. Wall time is training only, on this "
        "project's 2-core development machine (shared with other jobs, so timings are noisy).", "",
        "| model | class | epochs | wall time | test metric | size |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        "Regenerate everything (about 25 minutes of training here): `python bench/train_zoo.py --overwrite`; "
        "one model: `--models NAME`; only the READMEs and figures, from the exports: "
        "`--cards-only`. The latest versions of `vae_mnist` and `hvae_mnist` (2) are Burda et "
        "al.'s models trained on the paper's budget by `bench/burda.py` (their cards give the "
        "commands); version 1 of each is this script's short training.", ""])
    (Path(out) / "README.md").write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--epochs", type=int, help="override every model's epoch budget")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--ll-examples", type=int, default=500,
                        help="test images the log-likelihood is estimated on")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "tensorflow_datasets"))
    parser.add_argument("--out", default=str(REPO / "saved_models"))
    parser.add_argument("--overwrite", action="store_true", help="replace existing exports")
    parser.add_argument("--cards-only", action="store_true",
                        help="only rewrite READMEs and figures from the existing exports")
    args = parser.parse_args(argv)
    if not args.cards_only:
        for name in args.models:
            train_one(name, args)
    for name in args.models:
        model_dir = Path(args.out) / f"{name}_mnist"
        if model_dir.exists():
            write_figures(model_dir, args.data_dir)
            write_card_readme(model_dir)
    write_index(args.out)


if __name__ == "__main__":
    main()
