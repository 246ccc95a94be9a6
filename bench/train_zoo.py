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
  Bernoulli (cross-entropy) likelihood, trained on the first 55,000 training images until the
  loss on the other 5,000 (TFDS's train[55000:]) has not improved for AE_PATIENCE epochs, with
  the best epoch's weights kept (tf_keras EarlyStopping). The test metrics are the per-pixel
  squared error of the reconstruction on the 10,000 test images and a linear probe
  (bench/linear_probe.py: a logistic regression on the codes of the 60,000 training images,
  tested on the 10,000 test images, beside PCA's codes of the same size and the raw pixels).
  Their code density for `sample` is a 10-component Gaussian mixture fitted to the codes of
  the first 10,000 training images.

A VAE goes to saved_models/<model>_mnist/1/ (replaced when --overwrite), an autoencoder to the
next version of saved_models/<model>_mnist/ (earlier versions stay shipped), with the figures
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
# Autoencoders stop when the loss on a held-out part of the training set (the last 5,000 of
# TFDS's train split, a fixed pseudo-random subset of MNIST's) has not improved for AE_PATIENCE
# epochs, keeping the best epoch's weights; AE_MAX_EPOCHS is a bound they are not meant to reach.
AE_TRAIN_SPLIT, AE_VALIDATION_SPLIT = "train[:55000]", "train[55000:]"
AE_PATIENCE = 10
AE_MAX_EPOCHS = 500
#: what the autoencoders' test metrics score (tfvae.cards' fields): MNIST's test grey levels
AE_TEST_PROTOCOL = {"dataset": "mnist", "split": "test", "binarize": None, "seed": 0,
                    "take": None, "k": None}

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
    # Autoencoders: at most AE_MAX_EPOCHS epochs, early stopping decides (version 1 ran 12).
    "ae": (dict(latent_dim=32, hidden_units=(256, 128)), AE_MAX_EPOCHS, 0),
    "denoising_ae": (dict(latent_dim=32, hidden_units=(256, 128), corruption="masking",
                          noise_level=0.25), AE_MAX_EPOCHS, 0),
    "sparse_ae": (dict(latent_dim=32, hidden_units=(256, 128), sparsity_weight=1.0, rho=0.05),
                  AE_MAX_EPOCHS, 0),
    "contractive_ae": (dict(latent_dim=16, hidden_units=(256, 128), contractive_weight=0.1),
                       AE_MAX_EPOCHS, 0),
}
# XLA took over 5 minutes to compile the contractive penalty's batch_jacobian (then stopped);
# without it a step takes 0.04-0.15 s.
NO_XLA = {"contractive_ae"}
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
SEED = 0
MACHINE = "2 shared CPU cores, no GPU (the development machine)"


def data_description(name, args):
    if name in VAES:
        return {"name": "mnist", "source": "TFDS mnist 3.0.1",
                "train": "60,000 images, dynamically binarized (fresh Bernoulli bits each epoch)",
                "test": "10,000 images, one fixed binarization (tfvae.data.load('mnist', 'test', "
                        "binarize='static', seed=0))"}
    return {"name": "mnist", "source": "TFDS mnist 3.0.1",
            "train": f"55,000 images (TFDS split {AE_TRAIN_SPLIT}), grey levels in [0, 1]",
            "validation": f"the other 5,000 training images (TFDS split {AE_VALIDATION_SPLIT}), "
                          f"held out for early stopping",
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
    if name not in VAES:
        return train_autoencoder(name, args)
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
    test_images = test_set(name, args.data_dir)
    start = time.perf_counter()
    metrics = evaluate_vae(model, test_images, args)
    eval_seconds = time.perf_counter() - start
    command = f"python bench/train_zoo.py --models {name}" + (
        f" --epochs {args.epochs}" if args.epochs else "") + (
        f" --k {args.k} --ll-examples {args.ll_examples}" if name in VAES else "")
    training = {"command": command, "epochs": epochs, "batch_size": BATCH_SIZE,
                "optimizer": f"Adam({LEARNING_RATE})", "seed": SEED,
                "kl_warmup_epochs": warmup or None, "xla": name not in NO_XLA,
                "wall_seconds": round(train_seconds, 1),
                "eval_seconds": round(eval_seconds, 1),
                "machine": MACHINE,
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


def fit_early_stopping(model, train, validation, max_epochs, patience, monitor="val_loss",
                       callbacks=(), verbose=2):
    """`model.fit(train)` until the held-out loss `monitor` (by default the model's loss on
    `validation`) has not improved for `patience` epochs (at most `max_epochs`), the best
    epoch's weights restored (tf_keras EarlyStopping). `callbacks` run before the stopping rule
    (one of them may put `monitor` in the epoch's logs).

    Returns {"epochs_run", "best_epoch" (1-based), "best_validation_loss", "stopped_early",
    "validation_loss" (the monitored series), "val_loss" and "train_loss" (per epoch, nats
    per example)}."""
    import tf_keras

    stop = tf_keras.callbacks.EarlyStopping(monitor=monitor, patience=patience,
                                            restore_best_weights=True)
    history = model.fit(train, validation_data=validation, epochs=max_epochs,
                        callbacks=[*callbacks, stop], verbose=verbose).history
    monitored = [float(v) for v in history[monitor]]
    best = int(np.argmin(monitored))
    return {"epochs_run": len(monitored), "best_epoch": best + 1,
            "best_validation_loss": monitored[best],
            "stopped_early": len(monitored) < max_epochs,
            "validation_loss": monitored,
            "val_loss": [float(v) for v in history["val_loss"]],
            "train_loss": [float(v) for v in history["loss"]]}


def held_out_denoising_loss(model, images, batch_size=1000):
    """A callback that puts `val_denoising_loss` in each epoch's logs: -log p(x | g(f(x~)))
    per image, the denoising criterion a denoising autoencoder trains on, on held-out images x,
    each with one corruption x~ drawn here, once (so every epoch scores the same inputs).

    Keras' validation loss scores clean inputs, which such a model never sees in training
    (masking without rescaling makes them brighter than its training inputs): on MNIST that
    loss jumped by 1-3 nats from epoch to epoch, and a patience of 10 epochs stopped on noise."""
    import tensorflow as tf
    import tf_keras

    clean = tf.constant(np.asarray(images, np.float32))
    corrupted = model.corrupt(clean)

    def on_epoch_end(epoch, logs):
        losses = [-model.decode(model.code(corrupted[i:i + batch_size])).log_prob(
                      clean[i:i + batch_size]) for i in range(0, len(images), batch_size)]
        logs["val_denoising_loss"] = float(tf.reduce_mean(tf.concat(losses, 0)))

    return tf_keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)


_PROBES = {}


def probe_baselines(data_dir):
    """bench/linear_probe.py's baselines on MNIST (PCA's and the pixels' probes), computed once
    per process and shared by the autoencoders trained in it."""
    if data_dir not in _PROBES:
        sys.path.insert(0, str(REPO / "bench"))
        import linear_probe

        _PROBES[data_dir] = linear_probe.Baselines(*linear_probe.load_labelled("mnist", data_dir))
    return _PROBES[data_dir]


def train_autoencoder(name, args):
    """Train an autoencoder with early stopping on the held-out split, probe its codes, and
    export it as the next version of out/<name>_mnist."""
    import tf_keras

    import tfvae
    from tfvae import data
    from tfvae.exporting import versions

    sys.path.insert(0, str(REPO / "bench"))
    import linear_probe

    kwargs, default_epochs, _ = ZOO[name]
    max_epochs, patience = args.epochs or default_epochs, args.patience
    model_dir = Path(args.out) / f"{name}_mnist"
    tf_keras.utils.set_random_seed(SEED)
    model = tfvae.models.get(name, input_shape=MNIST, **kwargs)
    model.compile()   # the user's defaults: Adam(1e-3), XLA where it pays (not contractive_ae)
    train = data.load("mnist", AE_TRAIN_SPLIT, batch_size=BATCH_SIZE, shuffle=True, seed=SEED,
                      data_dir=args.data_dir, download=False)
    validation = data.load("mnist", AE_VALIDATION_SPLIT, batch_size=1000, shuffle=False,
                           data_dir=args.data_dir, download=False)
    print(f"[{name}] {model.count_params():,} parameters, at most {max_epochs} epochs, "
          f"patience {patience}", flush=True)
    start = time.perf_counter()
    if name == "denoising_ae":   # stop on the held-out denoising criterion (see the function)
        held_out = np.concatenate([batch.numpy() for batch in validation])
        early = dict(monitor="val_denoising_loss",
                     callbacks=[held_out_denoising_loss(model, held_out)])
        monitor_text = ("val_denoising_loss: -log p(x | g(f(x~))) on the validation split, "
                        "nats per image, each image x with one fixed masking x~ (the denoising "
                        "criterion); Keras' val_loss on clean inputs is in clean_validation_loss")
    else:
        early, monitor_text = {}, ("val_loss: the model's loss on the validation split, nats "
                                   "per image (clean inputs, penalties included)")
    stopping = fit_early_stopping(model, train, validation, max_epochs, patience, **early)
    train_seconds = time.perf_counter() - start
    density_data = data.load("mnist", "train", batch_size=1000, take=10_000, shuffle=False,
                             data_dir=args.data_dir, download=False)
    model.fit_latent_density(density_data, kind="gmm", components=10, seed=SEED)
    start = time.perf_counter()
    metrics = evaluate_ae(model, test_set(name, args.data_dir))
    eval_seconds = time.perf_counter() - start
    start = time.perf_counter()
    probe = probe_baselines(args.data_dir).of_model(model)
    shipped = Path(args.out).resolve() == (REPO / "saved_models").resolve()
    version = max(versions(model_dir), default=0) + 1   # the probe's command names it
    probe_command = "python bench/linear_probe.py --models " + (
        f"{model_dir.name}:{version}" if shipped else linear_probe.shown(model_dir / str(version)))
    probe_seconds = time.perf_counter() - start
    command = f"python bench/train_zoo.py --models {name}" + (
        f" --epochs {args.epochs}" if args.epochs else "") + (
        f" --patience {args.patience}" if args.patience != AE_PATIENCE else "")
    training = {"command": command, "epochs": stopping["epochs_run"], "batch_size": BATCH_SIZE,
                "optimizer": f"Adam({LEARNING_RATE})", "seed": SEED, "kl_warmup_epochs": None,
                "xla": bool(model.jit_compile),
                "early_stopping": {
                    "monitor": monitor_text,
                    "train_split": AE_TRAIN_SPLIT, "validation_split": AE_VALIDATION_SPLIT,
                    "patience": patience, "max_epochs": max_epochs,
                    "epochs_run": stopping["epochs_run"], "best_epoch": stopping["best_epoch"],
                    "stopped_early": stopping["stopped_early"],
                    "best_validation_loss": round(stopping["best_validation_loss"], 3),
                    "restore_best_weights": True,
                    "validation_loss": [round(v, 3) for v in stopping["validation_loss"]],
                    **({"clean_validation_loss": [round(v, 3) for v in stopping["val_loss"]]}
                       if early else {})},
                "wall_seconds": round(train_seconds, 1),
                "eval_seconds": round(eval_seconds, 1),
                "machine": MACHINE,
                "best_epoch_train_loss": round(
                    stopping["train_loss"][stopping["best_epoch"] - 1], 3),
                "final_train_loss": round(stopping["train_loss"][-1], 3)}
    card = {"training": training, "test_protocol": AE_TEST_PROTOCOL,
            "linear_probe": {"command": probe_command, "dataset": "mnist",
                             "train_examples": 60_000, "test_examples": 10_000,
                             **linear_probe.settings(), "code_dim": probe["code_dim"],
                             "codes": probe["codes"], "pca": probe["pca"],
                             "pixels": probe["pixels"], "seconds": round(probe_seconds, 1)}}
    path = tfvae.export(model, model_dir, data=data_description(name, args), metrics=metrics,
                        card=card, version=version)
    update_manifest(args.out, model_dir.name, path)
    # The probe's figures are of the codes in memory; the export must give the same codes.
    x = test_set(name, args.data_dir)[:1000]
    exported = linear_probe.model_codes(tfvae.load(path), x)
    difference = float(np.max(np.abs(exported - linear_probe.model_codes(model, x))))
    print(json.dumps({"model": name, "export": linear_probe.shown(path), "metrics": metrics,
                      "early_stopping": {k: v for k, v in training["early_stopping"].items()
                                         if k != "validation_loss"},
                      "linear_probe": {k: probe[k]["accuracy"] for k in ("codes", "pca", "pixels")},
                      "export_code_difference": difference,
                      "wall_seconds": training["wall_seconds"]}), flush=True)
    return path


def reexport(name, out, in_place=False):
    """Export the latest version of saved_models/<name>_mnist again, with the same weights and
    card, as its next version (`in_place`: as the same version, for one not published yet):
    what an export format's change (e.g. the seeded signatures) asks of the shipped models.
    The weights are the export's own (from_pretrained checks its reconstructions)."""
    import tfvae
    from tfvae import cards
    from tfvae.exporting import versions

    model_dir = Path(out) / f"{name}_mnist"
    latest = max(versions(model_dir))
    folder = model_dir / str(latest)
    card = cards.read(folder)
    model = tfvae.models.from_pretrained(folder)
    if "kl_warmup_steps" in card["config"]:  # from_pretrained turns it off for fine-tuning
        model.kl_warmup_steps = card["config"]["kl_warmup_steps"]
    own = set(cards.model_card(model)) - {"data", "metrics", "test_protocol"}
    extra = {key: value for key, value in card.items() if key not in own
             and key not in ("data", "metrics", "test_protocol")}
    if not in_place:
        extra["reexported_from"] = {"version": latest, "why": "the signatures' draws come from "
                                    "seeds, and log_likelihood (tfvae.signatures)"}
    aside = model_dir / f".{latest}-replaced"
    if in_place:
        os.rename(folder, aside)
    try:
        path = tfvae.export(model, model_dir, data=card["data"], metrics=card["metrics"],
                            test_protocol=card.get("test_protocol"), card=extra,
                            version=latest if in_place else None)
    except BaseException:
        if in_place:
            os.rename(aside, folder)
        raise
    if in_place:
        shutil.rmtree(aside)
    update_manifest(out, model_dir.name, path)
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
    stopping = (" (early stopping on a held-out 5,000)" if "early_stopping" in card["training"]
                else "")
    manifest["models"][name] = {
        "model": card["model"], "class": card["class"],
        "description": f"{card['class']} trained on MNIST for {card['training']['epochs']} epochs"
                       f"{stopping}; train data: {card['data']['train']}. Card: {name}/README.md",
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
    text = f"test MSE {m['test_mse']:.5f} per pixel ({m['test_mse_examples']:,} images)"
    if "linear_probe" in card:
        p = card["linear_probe"]
        text += (f"; linear probe {percent(p['codes']['accuracy'])} (PCA {p['code_dim']}: "
                 f"{percent(p['pca']['accuracy'])}, pixels: {percent(p['pixels']['accuracy'])})")
    return text


def percent(accuracy):
    return f"{100 * accuracy:.2f}%"


def early_stopping_text(t):
    """The Training paragraph of an autoencoder trained with early stopping."""
    e = t["early_stopping"]
    stopped = (f"stopped after epoch {e['epochs_run']}, {e['patience']} epochs past the best"
               if e["stopped_early"] else f"ran all {e['max_epochs']} epochs without stopping")
    if "clean_validation_loss" in e:   # a denoising autoencoder (held_out_denoising_loss)
        criterion = (f"the denoising criterion on the held-out `{e['validation_split']}` (each "
                     f"image reconstructed from one fixed corruption of it, nats per image; the "
                     f"loss on clean inputs, which this model never trains on, jumped by a few "
                     f"nats from epoch to epoch and is in the card as `clean_validation_loss`)")
    else:
        criterion = (f"the model's loss on the held-out `{e['validation_split']}` (nats per "
                     f"image, on clean inputs, penalties included)")
    return (f"Early stopping: trained on TFDS's `{e['train_split']}`; {criterion} checked "
            f"after every epoch, patience {e['patience']} epochs, at most "
            f"{e['max_epochs']}. The run {stopped}; "
            f"the weights are those of the best epoch, {e['best_epoch']} (held-out loss "
            f"{e['best_validation_loss']:.2f} nats per image). {t['epochs']} epochs, "
            f"batch {t['batch_size']}, {t['optimizer']} (`compile()`'s default), seed "
            f"{t['seed']}, XLA {'on' if t['xla'] else 'off'}; training took "
            f"{t['wall_seconds']:.0f} s of wall time on {t['machine']}, the evaluation "
            f"{t['eval_seconds']:.1f} s. The held-out loss of every epoch is in the card "
            f"(`training.early_stopping.validation_loss`).")


def probe_lines(card):
    """The card README's linear-probe section."""
    p = card["linear_probe"]
    k = p["code_dim"]
    rows = [(f"this model's codes (`encode` → `mean`)", k, p["codes"]),
            (f"PCA, {k} components", k, p["pca"]), ("raw pixels", p["pixels"]["features"],
                                                     p["pixels"])]
    return [
        "## Linear probe", "",
        f"How linearly separable the digit classes are in the codes, as Vincent et al. (2010) and "
        f"Rifai et al. (2011) judged their autoencoders: a logistic regression fitted on the "
        f"codes of all {p['train_examples']:,} MNIST training images, its accuracy on the "
        f"{p['test_examples']:,} test images (chance: 10%).", "",
        "| features | size | test accuracy |", "| --- | --- | --- |",
        *(f"| {what} | {size} | {percent(r['accuracy'])} |" for what, size, r in rows), "",
        f"Classifier: {p['scaler']}, then {p['classifier']}; {p['pca_fit']}. Every fit converged "
        f"({max(r['iterations'] for _, _, r in rows)} iterations at most)."
        if all(r["converged"] for _, _, r in rows) else
        f"Classifier: {p['scaler']}, then {p['classifier']}; {p['pca_fit']}. Not every fit "
        f"converged within max_iter (iterations: "
        f"{', '.join(str(r['iterations']) for _, _, r in rows)}).", "",
        "Reproduce from this export (TensorFlow and scikit-learn; a few minutes):", "",
        "```sh", p["command"], "```", ""]


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
        f"(also `serving_default`), `score` and `log_likelihood` signatures (whatever they "
        f"draw, they draw from the request's seeds); this card is also "
        f"`{version}/assets/tfvae_card.json`."
        + (f" It holds version {card['reexported_from']['version']}'s weights, exported again "
           f"for those signatures (`python bench/train_zoo.py --reexport next`)."
           if "reexported_from" in card else ""), "",
        "## Data", "",
        f"- train: {card['data']['train']}",
        *([f"- validation: {card['data']['validation']}"] if "validation" in card["data"] else []),
        f"- test: {card['data']['test']}", "",
        "## Configuration", "",
        f"`tfvae.models.get(\"{name}\", **config)` with:", "",
        "| argument | value |", "| --- | --- |",
        *(f"| `{key}` | `{json.dumps(value)}` |" for key, value in config.items()), "",
        "## Training", "",
        "From the repository root (reads MNIST from `../shared/data/tensorflow_datasets`):", "",
        "```sh", t["command"], "```", "",
        early_stopping_text(t) if "early_stopping" in t else
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
        if "published_test_nll" in m:   # a paper's model on its budget (bench/burda.py)
            lines += paper_run_lines(name, t, m)
        else:
            lines += ["A short training of small networks: the papers' models train for "
                      "thousands of epochs (REFERENCES.md), so these are not their figures.", ""]
    else:
        lines += [
            "| metric | value | on |", "| --- | --- | --- |",
            f"| per-pixel squared error of the reconstruction | {m['test_mse']:.5f} (std over "
            f"images {m['test_mse_std']:.5f}) | {m['test_mse_examples']:,} test images |", ""]
        if "linear_probe" in card:
            lines += probe_lines(card)
    if "sampling" in card:
        lines += ["## Sampling", "", card["sampling"] + ".", ""]
    lines += ["## Figures", "",
              "![samples](samples.png)", "", "![reconstructions](reconstructions.png)", "",
              f"Export size: {size_of(Path(model_dir) / str(version)) / 1e6:.1f} MB.", ""]
    (Path(model_dir) / "README.md").write_text("\n".join(lines))


def paper_run_lines(name, t, m):
    """A paper run's card paragraphs (bench/burda.py): against the published figure, or the
    shipped model it is paired with image by image; how the protocol departs from the paper's.
    Cards written before these fields were recorded are Burda et al.'s Table 1 runs."""
    run = t.get("run_dir", f"bench/runs/{name}_burda")
    source = m.get("published_source", "Burda et al. (2015, Table 1)")
    nll = -m["test_log_likelihood"]
    # A run with a fine-tuning phase (the Ladder VAE) counts its epochs past the schedule's.
    finetune = t.get("protocol", {}).get("finetune")
    main = min(t["epochs"], t["schedule_epochs"])
    schedule = (f"after {main} of the protocol's {t['schedule_epochs']}-epoch schedule"
                + (f" and {t['epochs'] - main} of its {finetune['epochs']} epochs of fine-tuning"
                   if finetune else ""))
    paired = m.get("paired_with")
    if paired:
        text = (f"Against `{paired['against']}` on the same {paired['test_examples']:,} test "
                f"images (k = {paired['k']}), image by image: its NLL minus this model's is "
                f"{paired['nll_difference']:+.2f} ± {paired['nll_difference_stderr']:.2f} nats "
                f"(positive: this model is better; {paired['reference_nll']:.2f} against "
                f"{nll:.2f}), and the gap between -ELBO and NLL is {paired['gap']:.2f} nats "
                f"here against {paired['reference_gap']:.2f} there (difference's standard "
                f"error {paired['gap_difference_stderr']:.2f}), {schedule}.")
    else:
        text = (f"{source} report a test NLL of {m['published_test_nll']} nats for this model; "
                f"this one is at {nll:.2f} ({nll - m['published_test_nll']:+.2f} nats), "
                f"{schedule}.")
    lines = [text + f" Active units per stochastic layer: {m['active_units']}. The learning "
             f"curve (k = 5000 on a fixed 1,000 test images, another binarization) is "
             f"`{run}/curve.png`; every segment's epochs and wall time are in "
             f"`{run}/segments.jsonl` and in this card.", ""]
    if t.get("deviations_from_the_paper"):
        lines += ["How the protocol departs from the paper's:", "",
                  *(f"- {d}" for d in t["deviations_from_the_paper"]), ""]
    return lines


def listed(names):
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def write_index(out):
    rows, stopped, paper_runs = [], {}, []
    for model_dir in sorted(p for p in Path(out).iterdir() if p.is_dir() and p.name.endswith("_mnist")):
        card = card_of(model_dir)
        t = card["training"]
        if "early_stopping" in t:
            stopped[model_dir.name] = t["wall_seconds"]
        if t["command"].startswith("python bench/burda.py"):
            paper_runs.append(f"`{model_dir.name}`")
        rows.append(f"| [`{model_dir.name}`]({model_dir.name}/README.md) | {card['class']} | "
                    f"{t['epochs']} | {duration_text(t['wall_seconds'])} | {metric_text(card)} | "
                    f"{size_of(model_dir) / 1e6:.1f} MB |")
    text = "\n".join([
        "# Pretrained models", "",
        "Every model of the zoo trained on MNIST by `bench/train_zoo.py` (the exact command of "
        "each is in its card), exported for TF Serving. Load one by name with TensorFlow alone:",
        "", "```python", "import tfvae", "", "model = tfvae.load(\"vae_mnist\")", 
        "images = model.sample(16)[\"x\"]            # [16, 28, 28, 1]",
        "scores = model.score(images)[\"elbo\"]  # VAEs: ELBO per image, in nats", "```", "",
        'Only the models listed in [`zoo.json`](zoo.json), the zoo\'s manifest (each name\'s family, input shape, dataset and the versions shipped), load by name, and only those versions: anything else in this folder, such as an export of your own, is not taken for a shipped model and loads by its path (`tfvae.load("saved_models/my_vae")`). `tfvae.loading.shipped_models()` lists the names. After a non-editable `pip install .` this folder is not installed: load by path from a clone (`tfvae.load("path/to/tfvae/saved_models/vae_mnist")`) or set `TFVAE_SAVED_MODELS=path/to/tfvae/saved_models`.',
        "",
        "VAEs are trained on dynamically binarized MNIST and tested on a fixed binarization of "
        "the test set; autoencoders on grey levels. Wall time is training only, on this "
        "project's 2-core development machine (shared with other jobs, so timings are noisy).", "",
        "| model | class | epochs | wall time | test metric | size |",
        "| --- | --- | --- | --- | --- | --- |", *rows, "",
        "Regenerate everything: `python bench/train_zoo.py --overwrite`; "
        "one model: `--models NAME`; only the READMEs and figures, from the exports: "
        "`--cards-only`. --overwrite replaces the VAEs' version 1 (their short training). "
        + (f"The autoencoders ({', '.join(f'`{n}`' for n in stopped)}) train until the loss on "
           f"5,000 held-out training images stops improving, each run adding a version (their "
           f"latest took {duration_text(sum(stopped.values()))} in all here), and their cards "
           f"add a linear probe of the codes (`bench/linear_probe.py`). " if stopped else "")
        + (f"The latest versions of {listed(paper_runs)} are papers' models trained on their "
           f"papers' budgets by `bench/burda.py` (their cards give the commands and how each "
           f"protocol departs from its paper's); version 1 of each is this script's short "
           f"training." if paper_runs else ""), ""])
    (Path(out) / "README.md").write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(ZOO), choices=list(ZOO))
    parser.add_argument("--epochs", type=int,
                        help="override every model's epoch budget (autoencoders: the most epochs)")
    parser.add_argument("--patience", type=int, default=AE_PATIENCE,
                        help="autoencoders: epochs without a better held-out loss before "
                             "stopping")
    parser.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    parser.add_argument("--ll-examples", type=int, default=500,
                        help="test images the log-likelihood is estimated on")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "tensorflow_datasets"))
    parser.add_argument("--out", default=str(REPO / "saved_models"))
    parser.add_argument("--overwrite", action="store_true", help="replace existing exports")
    parser.add_argument("--cards-only", action="store_true",
                        help="only rewrite READMEs and figures from the existing exports")
    parser.add_argument("--reexport", choices=["next", "in-place"],
                        help="export the latest versions again, same weights and card, as the "
                             "next version (or the same one, for one not published yet)")
    args = parser.parse_args(argv)
    if args.reexport:
        for name in args.models:
            print(reexport(name, args.out, in_place=args.reexport == "in-place"), flush=True)
    elif not args.cards_only:
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
