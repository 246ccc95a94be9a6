"""The `tfvae` command: train, evaluate, export, sample and list models.

    tfvae models
    tfvae train vae --dataset digits --epochs 20 --latent-dim 8 --export saved_models/vae_digits
    tfvae train vae --data-dir my_images --image-size 32 --color-mode rgb --validation-split 0.1
    tfvae evaluate saved_models/vae_digits --dataset digits
    tfvae sample saved_models/vae_digits --num 16 --out samples.png
    tfvae plot vae_mnist --kind latent --dataset mnist --num 2000 --out latent.png
    tfvae export model.keras saved_models/vae_digits
    tfvae export model.keras exports/vae_digits_onnx --format onnx
    tfvae convert vae_mnist exports/vae_mnist_litert --format litert
    tfvae serving-config saved_models/ --batching batching.config > models.config
    tfvae --verbose models          # with TensorFlow's C++ start-up logs

Each command has --help. Results print as one JSON line on standard output; progress bars and
messages go to standard error. TensorFlow's C++ logs stay quiet unless TF_CPP_MIN_LOG_LEVEL is
set or --verbose is given (see tfvae.logs).
"""
import argparse
import ast
import json
import os
import sys
import time

from tfvae import logs


def _log(message):
    print(message, file=sys.stderr, flush=True)


def _parse_value(text):
    """A --set value: a Python literal (3, 0.5, (64, 32), None, 'x') or else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _model_kwargs(args, input_shape):
    """Constructor arguments from the flags that were given (the model's defaults otherwise)."""
    kwargs = {"input_shape": input_shape}
    for flag in ("latent_dim", "hidden_units", "network", "likelihood", "beta"):
        value = getattr(args, flag)
        if value is not None:
            kwargs[flag] = value
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"tfvae: --set takes KEY=VALUE, got {item!r}")
        kwargs[key.replace("-", "_")] = _parse_value(value)
    return kwargs


def _number(text, kind, minimum, strict):
    """argparse type: a `kind` (int or float) >= minimum (> minimum when strict), finite."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or (
            value <= minimum if strict else value < minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        noun = "an integer" if kind is int else "a finite number"
        raise argparse.ArgumentTypeError(f"must be {noun} {bound}, got {text!r}")
    return value


def _positive_int(text):
    return _number(text, int, 1, strict=False)


def _non_negative_int(text):
    return _number(text, int, 0, strict=False)


def _positive_float(text):
    return _number(text, float, 0.0, strict=True)


def _non_negative_float(text):
    return _number(text, float, 0.0, strict=False)


def _widths(text):
    """argparse type: comma-separated positive integers, e.g. 512,256."""
    return tuple(_positive_int(part.strip()) for part in text.split(","))


def _fraction(text):
    """argparse type: a number strictly between 0 and 1."""
    value = _number(text, float, 0.0, strict=True)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text!r}")
    return value


_FOLDER_FLAGS = (("color_mode", "--color-mode"), ("validation_split", "--validation-split"))


def _holds_images(folder, limit=2000):
    """Image files directly in `folder` or in its immediate subfolders (class folders)? A TFDS
    data folder has none there (its downloads/ folder is skipped); only `limit` entries are
    looked at, so a huge folder costs little."""
    from tfvae.data import IMAGE_EXTENSIONS

    seen = 0
    for top, subfolders, files in os.walk(folder):
        if any(os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS for f in files):
            return True
        seen += len(files) + len(subfolders)
        if top == folder:
            subfolders[:] = [d for d in subfolders if d != "downloads"]
        else:
            subfolders[:] = []  # no deeper than class folders
        if seen > limit:
            break
    return False


def _check_data_flags(args):
    """Resolve --dataset / --data-dir / --image-size before any work, refusing mixtures.

    --image-size is what makes --data-dir a folder of images (data.from_directory); without it
    --data-dir keeps its meaning, the TFDS data folder for --dataset."""
    image_size = getattr(args, "image_size", None)
    args.image_folder = image_size is not None
    if not args.image_folder:
        for attribute, flag in _FOLDER_FLAGS:
            if getattr(args, attribute, None) is not None:
                raise SystemExit(f"tfvae: {flag} applies to a folder of images: pass "
                                 f"--data-dir FOLDER --image-size N")
        if (hasattr(args, "image_size") and args.data_dir and os.path.isdir(args.data_dir)
                and _holds_images(args.data_dir)):
            raise SystemExit(f"tfvae: --data-dir {args.data_dir} holds image files, not a TFDS "
                             f"data folder: pass --image-size N to use them (resized to NxN)")
        args.dataset = args.dataset or "digits"
        return
    if not args.data_dir:
        raise SystemExit("tfvae: --image-size needs --data-dir FOLDER, the folder of images")
    if not os.path.isdir(args.data_dir):
        raise SystemExit(f"tfvae: --data-dir {args.data_dir} is not a folder (with --image-size "
                         f"it is the folder of images)")
    if args.dataset is not None:
        raise SystemExit(f"tfvae: --dataset {args.dataset} and --image-size exclude each other: "
                         f"--image-size trains on the images in --data-dir; drop one of them")
    if args.take is not None:
        raise SystemExit("tfvae: --take does not apply to an image folder (--image-size); "
                         "use --validation-split, or a smaller folder")
    args.color_mode = args.color_mode or "grayscale"
    # The folder's own name, never its path: it goes into results and model cards.
    args.dataset = os.path.basename(os.path.normpath(os.path.abspath(args.data_dir)))


def _input_shape(args):
    from tfvae import data

    if args.image_folder:
        return (args.image_size, args.image_size, 3 if args.color_mode == "rgb" else 1)
    return data.input_shape(args.dataset)


def _load_data(args, split, batch_size, shuffle=None, binarize="flag"):
    """The --dataset split, or with --image-size the image folder: its "training" subset for
    split "train" and its "validation" subset otherwise (the whole folder without
    --validation-split)."""
    from tfvae import data

    binarize = args.binarize if binarize == "flag" else binarize
    if not args.image_folder:
        return data.load(args.dataset, split, batch_size=batch_size, binarize=binarize,
                         data_dir=args.data_dir, download=not args.offline, take=args.take,
                         seed=args.seed, shuffle=shuffle)
    subset = {}
    if args.validation_split is not None:
        if split not in ("train", "training", "test", "validation", "valid"):
            raise SystemExit(f"tfvae: --split {split} of an image folder: use train (the "
                             f"training part) or test / validation (the held-out part)")
        subset = {"validation_split": args.validation_split,
                  "subset": "training" if split in ("train", "training") else "validation"}
    return data.from_directory(args.data_dir, args.image_size, args.color_mode,
                               batch_size=batch_size, binarize=binarize, seed=args.seed,
                               shuffle=split in ("train", "training") if shuffle is None else shuffle,
                               **subset)


def _portable_command(argv):
    """The command line as run, with absolute paths cut to their last part: model cards must
    not record where things lay on the training machine."""
    def portable(token):
        flag, sep, value = token.partition("=") if token.startswith("--") else ("", "", token)
        if os.path.isabs(value):
            value = os.path.basename(os.path.normpath(value))
        return flag + sep + value

    return "tfvae " + " ".join(portable(token) for token in argv)


def _count(dataset):
    """Examples in an image-folder dataset (None for the others: counting them would cost a
    pass over the data)."""
    files = getattr(dataset, "file_paths", None)
    return None if files is None else len(files)


def _data_card(args, counts):
    """The model card's `data`: what the model was trained on, without machine paths.

        {"name": "digits", "source": "scikit-learn digits"}
    """
    if not args.image_folder:
        return {"name": args.dataset, "source": _data_source(args)}
    held_out = args.validation_split is not None
    return {"name": args.dataset, "source": "image folder",
            "examples": {"training": counts.get("training"),
                         "validation": counts.get("test") if held_out else 0},
            "test_metrics_on": "validation" if held_out else "training"}


def _test_protocol(args):
    """What the card's test metrics scored, as the fields `tfvae evaluate` reads back (see
    tfvae.cards): the dataset, test split, binarize, seed and take (for an image folder its
    image size, colour mode and validation split instead of take)."""
    protocol = {"dataset": args.dataset, "split": "test", "binarize": args.binarize,
                "seed": args.seed, "take": args.take, "k": None}
    if args.image_folder:
        protocol.update(take=None, image_size=args.image_size, color_mode=args.color_mode,
                        validation_split=args.validation_split)
    return protocol


def _data_source(args):
    """Where --dataset's examples came from, e.g. "TFDS mnist 3.0.1" (a name, never a path)."""
    from tfvae import data

    return data.source(args.dataset, args.data_dir)


def cmd_models(args):
    from tfvae import models

    for name in models.names():
        doc = (models.get_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:16s} {doc}")


def cmd_train(args):
    import tf_keras

    from tfvae import models, training
    from tfvae.callbacks import KLWarmup
    from tfvae.exporting import export

    # The strategy first: MultiWorkerMirroredStrategy must exist before any other TF work.
    strategy = training.strategy_from_name(args.strategy, tpu=args.tpu)
    chief = getattr(strategy.extended, "should_checkpoint", True)  # multi-worker: one writer
    previous_policy = tf_keras.mixed_precision.global_policy()
    training.set_precision(args.mixed_precision)
    try:
        tf_keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            model = models.get(args.model, **_model_kwargs(args, _input_shape(args)))
            model.compile(optimizer=training.make_optimizer(args.lr, args.clip_norm))
    finally:
        # Models built later in this process (tests call main()) get the previous policy.
        tf_keras.mixed_precision.set_global_policy(previous_policy)
    test = _load_data(args, "test", args.batch_size)
    counts = {"test": _count(test)}
    if args.image_folder and args.validation_split is None:
        _log(f"no --validation-split: the test metrics score the training images of "
             f"{args.dataset}")
    callbacks = []
    if args.kl_warmup:
        if not hasattr(model, "kl_weight"):
            raise SystemExit(f"tfvae: --kl-warmup needs a VAE; {args.model} has no KL term")
        if args.kl_warmup >= args.epochs:
            raise SystemExit(f"tfvae: --kl-warmup {args.kl_warmup} must be fewer than --epochs "
                             f"{args.epochs}, or the KL term never trains at full weight")
        callbacks.append(KLWarmup(epochs=args.kl_warmup))
    if args.logdir:
        callbacks.append(tf_keras.callbacks.TensorBoard(args.logdir))
    verbose = 1 if sys.stderr.isatty() else 2
    _log(f"training {args.model} on {args.dataset} for {args.epochs} epochs"
         + (f" on {strategy.num_replicas_in_sync} replicas" if args.strategy != "default" else ""))
    done = 0
    start = time.perf_counter()
    # Keras writes its progress bar to stdout; keep stdout for the JSON result.
    stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        if args.checkpoint_dir:
            done = min(training.epochs_done(args.checkpoint_dir), args.epochs)
            if done:
                _log(f"resuming from {args.checkpoint_dir}: {done} of {args.epochs} epochs done")
            # Single, unshuffled examples: fit_resumable shuffles (and binarizes dynamically)
            # per epoch from (seed, epoch), so a resumed run repeats an uninterrupted one.
            examples = _load_data(args, "train", None, shuffle=False,
                                  binarize="static" if args.binarize == "static" else None)
            counts["training"] = _count(examples)
            training.fit_resumable(
                model, examples, epochs=args.epochs, batch_size=args.batch_size,
                checkpoint_dir=args.checkpoint_dir, seed=args.seed,
                binarize="dynamic" if args.binarize == "dynamic" else None,
                drop_remainder=args.strategy == "tpu", callbacks=callbacks, verbose=verbose,
                run={"dataset": args.dataset, "take": args.take})
            train = examples.batch(args.batch_size)
        else:
            train = _load_data(args, "train", args.batch_size)
            counts["training"] = _count(train)
            if args.strategy == "tpu":  # TPUs compile for static shapes
                train = train.rebatch(args.batch_size, drop_remainder=True)
            model.fit(train, epochs=args.epochs, verbose=verbose,
                      callbacks=[training.NonFiniteGuard(), *callbacks])
        if hasattr(model, "fit_latent_density"):
            model.fit_latent_density(train)  # deterministic autoencoders sample from it
        metrics = model.evaluate(test, verbose=0, return_dict=True)
    finally:
        sys.stdout = stdout
    seconds = time.perf_counter() - start
    result = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs,
              "train_seconds": round(seconds, 1),
              "test": {k: round(float(v), 4) for k, v in metrics.items()}}
    if args.image_folder:
        result["examples"] = _data_card(args, counts)["examples"]
    if args.checkpoint_dir:
        result.update(checkpoint_dir=args.checkpoint_dir, resumed_after_epochs=done)
    if not chief:
        _log("not the chief worker: the chief saves and exports")
        args.save = args.export = None
    if args.save:
        model.save(args.save)
        result["saved"] = args.save
    if args.export:
        command = _portable_command(sys.argv[1:]) if sys.argv[0].endswith("tfvae") else None
        path = export(model, args.export, metrics={f"test_{k}": v for k, v in result["test"].items()},
                      data=_data_card(args, counts), test_protocol=_test_protocol(args),
                      card={"training": {"epochs": args.epochs, "batch_size": args.batch_size,
                                         "learning_rate": args.lr, "seed": args.seed,
                                         "kl_warmup_epochs": args.kl_warmup,
                                         "clip_norm": args.clip_norm, "strategy": args.strategy,
                                         "replicas": strategy.num_replicas_in_sync,
                                         "precision": args.mixed_precision or "float32",
                                         "wall_seconds": round(seconds, 1), "command": command}})
        result["export"] = str(path)
    print(json.dumps(result))


def cmd_evaluate(args):
    import numpy as np

    from tfvae.loading import load
    from tfvae.progress import Progress

    served = load(args.path, args.version)
    if "score" not in served.signatures:
        raise SystemExit(f"tfvae: {served.path} has no 'score' signature (exported by an older tfvae)")
    _log(f"evaluating on {_protocol_text(args.protocol)}: {args.protocol_origin}")
    totals, count, squared_error = {}, 0, 0.0
    batches = _load_data(args, args.split, args.batch_size)
    total = int(batches.cardinality())
    k = args.k if args.k and "log_likelihood" in served.signatures else None
    if args.k and not k:
        raise SystemExit(f"tfvae: {served.path} has no 'log_likelihood' signature (exported by "
                         f"an older tfvae)")
    if not k and getattr(args, "card_k", None):
        _log(f"the card's log-likelihood used k = {args.card_k}: --k {args.card_k} scores it too")
    with Progress(f"evaluating {args.path}", total if total > 0 else None) as bar:
        for x in batches:
            x = x.numpy()
            # Every draw from the example's index in the split: the same run, the same numbers.
            seeds = count + np.arange(len(x), dtype=np.int64)
            scores = served.score(x, seed=seeds)
            if k:
                scores["log_likelihood"] = served.log_likelihood(x, k=k, seed=seeds)[
                    "log_likelihood"]
            for key, value in scores.items():
                totals[key] = totals.get(key, 0.0) + float(np.sum(value))
            squared_error += float(np.sum((served.reconstruct(x)["x"] - x) ** 2))
            count += len(x)
            bar.update()
    result = {k: round(v / count, 4) for k, v in totals.items()}
    result["mse"] = round(squared_error / (count * int(np.prod(x.shape[1:]))), 6)
    line = {"path": str(served.path), "dataset": args.dataset, "split": args.split,
            "examples": count, "metrics": result, "protocol": args.protocol,
            "from_card": args.from_card, "k": k}
    if args.from_card:
        # The card's own figures for the same metrics, to compare with (on its examples).
        metrics = served.card.get("metrics") or {}
        reported = {k[len("test_"):]: v for k, v in metrics.items()
                    if k.startswith("test_") and k[len("test_"):] in result}
        if reported:
            line["card_metrics"] = reported
            _log("the model card reports " + ", ".join(f"{k} {v}" for k, v in reported.items())
                 + "; this run: " + ", ".join(f"{k} {result[k]}" for k in reported))
    print(json.dumps(line))


# ---- evaluate's test protocol, from the model card -----------------------------------------
#: evaluate's flags that, given on the command line, replace what the model card records
_PROTOCOL_FLAGS = {"dataset": "--dataset", "split": "--split", "binarize": "--binarize",
                   "seed": "--seed"}
_FOLDER_PROTOCOL = ("image_size", "color_mode", "validation_split")


def _card_of(args):
    """The model card of the export `tfvae evaluate` names, or None (no export there, or no
    card: `load` then says what is wrong, after the flags are checked)."""
    from tfvae import cards
    from tfvae.loading import resolve

    try:
        return cards.read(resolve(args.path, args.version))
    except (OSError, ValueError):
        return None


def _use_card_protocol(args):
    """Fill evaluate's data flags that were not given from the export's model card, so that by
    default it scores what the card's test metrics scored: same dataset, split, examples and
    bits. A flag given on the command line wins; a --dataset (or --image-size) other than the
    card's data sets the card aside. Sets args.from_card and args.protocol_origin."""
    from tfvae import cards

    protocol = cards.test_protocol(_card_of(args))
    args.card_k = None
    if protocol is not None:  # k is the log-likelihood's samples, not a choice of examples
        args.card_k = protocol.pop("k")
    args.from_card = False
    args.protocol_origin = "the flags' defaults (the model card records no test protocol)"
    folder_card = protocol is not None and "image_size" in protocol
    if protocol is not None and args.dataset is not None and (
            folder_card or args.dataset != protocol["dataset"]):
        args.protocol_origin = (f"--dataset {args.dataset}, not the model card's data "
                                f"({protocol['dataset']}): the flags' defaults")
        protocol = None
    if protocol is not None and args.image_size is not None and not folder_card:
        args.protocol_origin = (f"--image-size: a folder of images, not the model card's data "
                                f"({protocol['dataset']}): the flags' defaults")
        protocol = None
    if protocol is not None and folder_card and not args.data_dir:
        raise SystemExit(f"tfvae: the model card's data is the image folder {protocol['dataset']!r}"
                         f" (cards record no paths): pass --data-dir FOLDER, or --dataset NAME "
                         f"to score other data")
    if protocol is not None:
        taken = []
        for field, value in protocol.items():
            # An image folder is named by --data-dir, not by a dataset name.
            if getattr(args, field, None) is None and not (folder_card and field == "dataset"):
                setattr(args, field, value)
                taken.append(field)
        args.from_card = bool(taken)
        # --binarize none is still "none" here (main maps it to None after this)
        changed = [_PROTOCOL_FLAGS.get(f, "--" + f.replace("_", "-")) for f, value in
                   protocol.items() if f not in taken and not (folder_card and f == "dataset")
                   and {"none": None}.get(getattr(args, f, None), getattr(args, f, None)) != value]
        args.protocol_origin = "the model card's test protocol" + (
            f", but {', '.join(changed)} from the command line" if changed else "")
    args.split = "test" if args.split is None else args.split
    args.seed = 0 if args.seed is None else args.seed


def _protocol_of(args):
    """What evaluate scores, for its JSON line: dataset, split, binarize, seed, take (and an
    image folder's image_size, color_mode and validation_split)."""
    protocol = {"dataset": args.dataset, "split": args.split, "binarize": args.binarize,
                "seed": args.seed, "take": args.take}
    if args.image_folder:
        protocol.update({k: getattr(args, k) for k in _FOLDER_PROTOCOL})
        protocol.pop("take")
    return protocol


def _protocol_text(protocol):
    """e.g. "mnist, split test, binarize static, seed 0, take 1000"."""
    words = [protocol["dataset"], f"split {protocol['split']}",
             f"binarize {protocol['binarize'] or 'none (grey levels)'}",
             f"seed {protocol['seed']}"]
    words += [f"{k.replace('_', ' ')} {protocol[k]}" for k in ("take", *_FOLDER_PROTOCOL)
              if protocol.get(k) is not None]
    return ", ".join(words)


def cmd_sample(args):
    import numpy as np

    from tfvae import plotting
    from tfvae.loading import load
    from tfvae.progress import Progress

    served = load(args.path, args.version)
    seeds = np.arange(args.seed, args.seed + args.num)
    images = served.sample(seeds)["x"]
    plotting.save_image_grid(images, args.out, title=f"{served.card['model'] if served.card else ''}"
                             f" samples, seeds {seeds[0]}..{seeds[-1]}")
    print(json.dumps({"path": str(served.path), "out": args.out, "num": args.num}))


def cmd_plot(args):
    import numpy as np

    from tfvae import data, plotting
    from tfvae.loading import load
    from tfvae.progress import Progress

    served = load(args.path, args.version)
    kind = args.kind
    x = labels = None
    if kind not in ("samples", "manifold"):
        # Inputs from the data, in the model's own input shape: one batch of --num examples.
        batch = next(iter(data.load(args.dataset, args.split, batch_size=args.num,
                                    binarize=args.binarize, data_dir=args.data_dir,
                                    download=not args.offline, seed=args.seed,
                                    with_labels=args.dataset != "binarized_mnist",
                                    shuffle=False)))
        x, labels = (batch[0].numpy(), batch[1].numpy()) if isinstance(batch, tuple) \
            else (batch.numpy(), None)
    if kind == "samples":
        plotting.plot_samples(served, num=args.num, seed=args.seed, path=args.out)
    elif kind == "reconstructions":
        plotting.plot_reconstructions(served, x, path=args.out)
    elif kind == "latent":
        plotting.plot_latent_space(served, x, labels, method=args.method, path=args.out)
    elif kind == "manifold":
        plotting.plot_latent_manifold(served, n=args.grid, path=args.out)
    elif kind == "traversals":
        plotting.plot_traversals(served, x[0], path=args.out)
    elif kind == "interpolation":
        plotting.plot_interpolation(served, x[0], x[-1], steps=args.grid, method=args.method
                                    if args.method in ("linear", "slerp") else "linear",
                                    path=args.out)
    print(json.dumps({"path": str(served.path), "kind": kind, "out": args.out,
                      "examples": None if x is None else int(len(x))}))


def cmd_export(args):
    import tf_keras

    import tfvae.models  # noqa: F401 - registers the classes load_model needs
    from tfvae.exporting import export

    model = tf_keras.models.load_model(args.model_file, safe_mode=True)
    print(json.dumps({"export": str(export(model, args.model_dir, format=args.format))}))


def cmd_convert(args):
    from tfvae.exporting import convert

    path = convert(args.source, args.model_dir, format=args.format, version=args.version)
    print(json.dumps({"export": str(path)}))


def cmd_serving_config(args):
    from tfvae import serving

    # Both files are checked before either is written: TF Serving refuses a relative base path
    # at start-up, so one is refused here with the reason (serving.check_base_path).
    config = serving.serving_config(args.models_dir, version_policy=args.version_policy,
                                    base_path=args.base_path)
    batching = args.batching and serving.batching_parameters(
        max_batch_size=args.max_batch_size, max_execution_batch_size=args.max_execution_batch_size)
    print(config, end="")
    if batching:
        with open(args.batching, "w") as out:
            out.write(batching)
        _log(f"wrote TF Serving batching parameters to {args.batching}")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfvae", description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ logs (hidden unless TF_CPP_MIN_LOG_LEVEL is "
                             "set); give it before the command: tfvae --verbose models")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def default(plain, card_default=None):
        """A flag's default, as its help says it: evaluate's come from the model card."""
        return f"default: {plain}" if card_default is None else \
            f"default: the model card's {card_default} (else {plain})"

    def data_flags(p, default_split=None, image_folder=False, card=False):
        # card: evaluate, whose unset --dataset, --split, --binarize and --seed (default None)
        # come from the export's model card.
        # default None, read as "digits": an explicit --dataset next to --image-size is refused
        p.add_argument("--dataset",
                       help="digits (embedded), mnist, fashion_mnist, binarized_mnist, or any "
                            "TFDS image dataset; " + default("digits", "dataset" if card else None))
        if not image_folder:
            p.add_argument("--data-dir",
                           help="TFDS data folder (or the folder of binarized_mnist.npz)")
        else:
            p.add_argument("--data-dir", metavar="FOLDER",
                           help="TFDS data folder (or the folder of binarized_mnist.npz); with "
                                "--image-size, a folder of image files (png, jpg, bmp, gif; "
                                "subfolders too)")
            p.add_argument("--image-size", type=_positive_int, metavar="N",
                           help="train on the images in --data-dir, resized to NxN")
            p.add_argument("--color-mode", choices=["grayscale", "rgb"],
                           help="with --image-size: 1 or 3 channels (default grayscale)")
            p.add_argument("--validation-split", type=_fraction, metavar="FRACTION",
                           help="with --image-size: hold out this share of the images (fixed "
                                "by --seed); the test metrics score them")
        p.add_argument("--binarize", choices=["dynamic", "static", "none"],
                       help="binarize the images, or keep their grey levels (none); "
                            + default("none", "binarization of its test set" if card else None))
        p.add_argument("--batch-size", type=_positive_int, default=128)
        p.add_argument("--take", type=_positive_int, help="use only the first N examples of each split")
        p.add_argument("--offline", action="store_true", help="never try to download data")
        p.add_argument("--seed", type=_non_negative_int, default=None if card else 0,
                       help="seeds the shuffle and the binarization (train: also the "
                            "weights); "
                            + default("0", "data seed" if card else None))
        if default_split:
            p.add_argument("--split", default=None if card else default_split,
                           help=default(default_split, "test split" if card else None))

    p = commands.add_parser("models", help="list the models")
    p.set_defaults(run=cmd_models)

    p = commands.add_parser("train", help="train a model with model.fit, evaluate, export")
    p.add_argument("model", help="a registered model name (see `tfvae models`)")
    data_flags(p, image_folder=True)
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--latent-dim", type=int)  # the model names latent_dim if it is < 1
    p.add_argument("--hidden-units", type=_widths, help="comma-separated widths, e.g. 512,256")
    p.add_argument("--network", choices=["mlp", "conv", "resnet"])
    p.add_argument("--likelihood", choices=["bernoulli", "gaussian", "discretized_logistic"])
    p.add_argument("--beta", type=_non_negative_float)
    p.add_argument("--kl-warmup", type=_positive_int, metavar="EPOCHS",
                   help="VAEs: raise the KL weight from 0 to 1 over the first EPOCHS epochs "
                        "(Sønderby et al. 2016; keeps deep hierarchies' top layers active)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other constructor argument, e.g. --set free_bits=0.5")
    p.add_argument("--export", metavar="DIR", help="export to DIR/<next version>")
    p.add_argument("--save", metavar="FILE.keras", help="also save the Keras model")
    p.add_argument("--logdir", help="TensorBoard log folder")
    p.add_argument("--checkpoint-dir", metavar="DIR",
                   help="checkpoint every epoch in DIR and, when DIR holds a checkpoint, resume "
                        "from it: a resumed run ends with the same weights as an uninterrupted "
                        "one (trains without XLA)")
    p.add_argument("--clip-norm", type=_positive_float, metavar="C",
                   help="clip the gradient's global norm to C")
    p.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"],
                   help="compute layers in 16 bits (float32 weights, log-probabilities and loss)")
    p.add_argument("--strategy", default="default",
                   choices=["default", "mirrored", "multiworker", "tpu"],
                   help="tf.distribute strategy: mirrored (local GPUs), multiworker (machines "
                        "listed in TF_CONFIG), tpu (untested); --batch-size is the global batch")
    p.add_argument("--tpu", metavar="ADDRESS", help="with --strategy tpu: the TPU's name or "
                   "grpc:// address (default: Colab's or the local TPU)")
    p.set_defaults(run=cmd_train)

    p = commands.add_parser("evaluate", help="score an export on a data split (TensorFlow only)")
    p.add_argument("path", help="an export folder, e.g. saved_models/vae_digits")
    p.add_argument("--version", type=_positive_int)
    data_flags(p, default_split="test", image_folder=True, card=True)
    p.add_argument("--k", type=_non_negative_int, metavar="K",
                   help="also the importance-sampled log-likelihood with K samples (the "
                        "export's log_likelihood signature; the card says the K of its own "
                        "figure)")
    p.set_defaults(run=cmd_evaluate)

    p = commands.add_parser("sample", help="draw samples from an export into a PNG grid")
    p.add_argument("path")
    p.add_argument("--version", type=_positive_int)
    p.add_argument("--num", type=_positive_int, default=16)
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="first seed; seeds are SEED..SEED+NUM-1")
    p.add_argument("--out", default="samples.png")
    p.set_defaults(run=cmd_sample)

    p = commands.add_parser("plot", help="draw a figure of an export into a PNG")
    p.add_argument("path", help="an export folder or a shipped model's name, e.g. vae_mnist")
    p.add_argument("--kind", default="samples",
                   choices=["samples", "reconstructions", "latent", "manifold", "traversals",
                            "interpolation"])
    p.add_argument("--version", type=_positive_int)
    data_flags(p, default_split="test")
    p.add_argument("--num", type=_positive_int, default=64,
                   help="samples to draw, or test examples to plot (latent: try 2000)")
    p.add_argument("--grid", type=_positive_int, default=15,
                   help="manifold: images per side; interpolation: steps")
    p.add_argument("--method", default="pca", choices=["pca", "tsne", "linear", "slerp"],
                   help="latent: the projection (pca, tsne); interpolation: linear or slerp")
    p.add_argument("--out", default="plot.png")
    p.set_defaults(run=cmd_plot)

    def format_flag(p, default):
        from tfvae.formats import FORMATS

        p.add_argument("--format", choices=FORMATS, default=default,
                       help=f"saved_model (TF Serving), litert or onnx (pip install "
                            f"\"tfvae[litert,onnx]\"); default: {default}")

    p = commands.add_parser("export", help="export a saved .keras model for TF Serving, LiteRT "
                                           "or ONNX Runtime")
    p.add_argument("model_file")
    p.add_argument("model_dir", help="e.g. saved_models/NAME; writes the next version inside")
    format_flag(p, "saved_model")
    p.set_defaults(run=cmd_export)

    p = commands.add_parser("convert", help="export a shipped or exported model again in "
                                            "another format, its card kept")
    p.add_argument("source", help="a shipped model's name (vae_mnist) or an export's folder")
    p.add_argument("model_dir", help="e.g. exports/vae_mnist_onnx; writes the next version inside")
    format_flag(p, "onnx")
    p.add_argument("--version", type=int, help="the version number to write (default: the next)")
    p.set_defaults(run=cmd_convert)

    p = commands.add_parser("serving-config",
                            help="print a TF Serving model_config_list for every model in a folder")
    p.add_argument("models_dir", help="e.g. saved_models/")
    p.add_argument("--version-policy", default="latest",
                   help="latest, latest:N, all or specific:1,3 (default: latest)")
    p.add_argument("--base-path", default="/models",
                   help="where the models folder is inside the server (the container): an "
                        "absolute path or URI, as TF Serving requires (default: /models)")
    p.add_argument("--batching", metavar="FILE", help="also write a batching parameters file")
    p.add_argument("--max-batch-size", type=int, default=256,
                   help="the largest request the server accepts, in examples (default: 256)")
    p.add_argument("--max-execution-batch-size", type=int, default=None,
                   help="the largest merged batch the model runs (default: --max-batch-size)")
    p.set_defaults(run=cmd_serving_config)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # Before anything imports TensorFlow: it reads TF_CPP_MIN_LOG_LEVEL once.
    if args.verbose:
        logs.show_tensorflow_logs()
    else:
        logs.quiet_tensorflow_logs()
    if args.command == "evaluate":
        _use_card_protocol(args)
    if getattr(args, "binarize", None) == "none":
        args.binarize = None
    if hasattr(args, "dataset"):
        _check_data_flags(args)
    if args.command == "evaluate":
        args.protocol = _protocol_of(args)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, KeyError, TypeError, FloatingPointError) as error:
        # Bad input gets one line, not a stack trace; anything else is a bug and shows one.
        raise SystemExit(f"tfvae {args.command}: {type(error).__name__}: {error}") from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
