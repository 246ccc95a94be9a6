"""Training beyond one device and without losing work: distribution strategies, mixed precision,
gradient clipping, checkpoints that resume exactly, and a guard against non-finite losses.

    strategy = training.strategy_from_name("mirrored")      # first: before other TF work
    training.set_precision("mixed_float16")                  # before the model is built
    with strategy.scope():
        model = tfvae.models.get("vae", input_shape=(28, 28, 1))
        model.compile(optimizer=training.make_optimizer(1e-3, clip_norm=10.0))
    examples = tfvae.data.load("mnist", "train", batch_size=None, shuffle=False)
    training.fit_resumable(model, examples, epochs=50, batch_size=128,
                           checkpoint_dir="runs/vae_mnist", seed=0)

Killed and run again, the same lines resume after the last completed epoch and end with the same
weights as a run that was never interrupted: every epoch's randomness (data order, dynamic
binarization, the models' sampling noise) depends on (seed, epoch) alone. The training step's
loss is divided by the global batch size (`LatentVariableModel.train_step`), so a run on several
replicas matches a run on one device with the same global batch.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import cards, validation

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN or infinite loss or weights and was stopped; nothing non-finite was
    saved (see `NonFiniteGuard`)."""


# ---- distribution and precision ----------------------------------------------------------
def strategy_from_name(name="default", tpu=None):
    """A `tf.distribute` strategy by name; build the model and compile it in `strategy.scope()`.

    - "default": no distribution, one device;
    - "mirrored": `MirroredStrategy`, one replica per local GPU (or the CPU when there is none);
    - "multiworker": `MultiWorkerMirroredStrategy`, synchronous training over the machines that
      the `TF_CONFIG` environment variable lists (one local worker without it). Every worker runs
      the same program; create the strategy before any other TensorFlow work;
    - "tpu": `TPUStrategy` on the TPU named by `tpu` (a name or grpc:// address; by default the
      Colab TPU of $COLAB_TPU_ADDR, else the local TPU VM). Untested: written without a TPU.

    Data: pass batches of the global batch size; each replica gets its share.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {list(STRATEGIES)}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        config = os.environ.get("TF_CONFIG")
        if config:
            try:
                parsed = json.loads(config)
                parsed["cluster"], parsed["task"]["type"], parsed["task"]["index"]
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"TF_CONFIG must be JSON with 'cluster' and 'task' (type, "
                                 f"index); got {config[:200]!r} ({error})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tpu is None and os.environ.get("COLAB_TPU_ADDR"):
        tpu = "grpc://" + os.environ["COLAB_TPU_ADDR"]
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(f"strategy='tpu': no TPU found at {tpu or 'local'!r} "
                         f"({type(error).__name__}: {str(error).splitlines()[0][:160]}); "
                         "run on a TPU runtime or give the TPU's address") from None
    return tf.distribute.TPUStrategy(resolver)


def set_precision(policy=None):
    """Set the Keras dtype policy of the models built from now on.

    "mixed_float16" (GPUs) and "mixed_bfloat16" (TPUs, recent CPUs) make the layers compute in 16
    bits on float32 weights. The distribution heads cast their parameters to float32, so
    log-probabilities, KL terms and the loss stay float32; with "mixed_float16", `compile()` wraps
    the optimizer in a LossScaleOptimizer so that small gradients do not underflow.

    Args:
        policy: "float32" (or None), "mixed_float16" or "mixed_bfloat16".
    """
    policy = policy or "float32"
    if policy not in PRECISIONS:
        raise ValueError(f"precision={policy!r} is not one of {list(PRECISIONS)}")
    tf_keras.mixed_precision.set_global_policy(policy)
    return policy


def make_optimizer(learning_rate=1e-3, clip_norm=None):
    """Adam; with `clip_norm`, gradients are rescaled so that their global norm is at most
    `clip_norm` (after the replicas' gradients are summed)."""
    learning_rate = validation.check_number("learning_rate", learning_rate, positive=True)
    if clip_norm is not None:
        clip_norm = validation.check_number("clip_norm", clip_norm, positive=True)
    return tf_keras.optimizers.Adam(learning_rate, global_clipnorm=clip_norm)


def start_fine_tuning(model, steps_per_epoch, epochs, iwae_samples=10, decay=0.75,
                      decay_epochs=200, learning_rate=None, start_step=None):
    """Sønderby et al.'s (2016) fine-tuning phase for a trained VAE: from here on it trains on
    the IWAE bound with `iwae_samples` importance samples (Burda et al. 2015), with its
    optimizer's current learning rate multiplied by `decay` every `decay_epochs` epochs, for
    `epochs` epochs; then fit on as before. Returns the learning-rate schedule.

        training.start_fine_tuning(model, steps_per_epoch=235, epochs=2000)
        model.fit(data, initial_epoch=2000, epochs=4000)

    The optimizer (and its moments) stays; the schedule is a function of its step count, so a
    run resumed from a checkpoint in the middle of the phase calls this again with the phase's
    `learning_rate` and `start_step` (by default the optimizer's current rate and step).
    """
    if not hasattr(model, "iwae_samples") or model.optimizer is None:
        raise ValueError("start_fine_tuning takes a compiled tfvae VAE (a model with "
                         "iwae_samples): call model.compile() first")
    iwae_samples = validation.check_positive_int("iwae_samples", iwae_samples)
    if iwae_samples > 1 and model.free_bits > 0:
        raise ValueError(f"iwae_samples={iwae_samples}: the IWAE objective has no free bits; "
                         f"this model floors its KL terms (free_bits={model.free_bits})")
    model.iwae_samples = iwae_samples
    if learning_rate is None:
        rate = model.optimizer.learning_rate
        learning_rate = float(rate(model.optimizer.iterations) if callable(rate) else rate)
    if start_step is None:
        start_step = int(model.optimizer.iterations)
    schedule = fine_tuning_schedule(learning_rate, start_step, steps_per_epoch, epochs, decay,
                                    decay_epochs)
    model.optimizer.learning_rate = schedule
    # iwae_samples is read when the training step is traced: trace it anew.
    model.make_train_function(force=True)
    return schedule


def fine_tuning_schedule(learning_rate, start_step, steps_per_epoch, epochs, decay=0.75,
                         decay_epochs=200):
    """The fine-tuning phase's learning rate as a function of the optimizer's step count: from
    `start_step`, `learning_rate` times `decay` ** (epochs begun / decay_epochs, rounded down)."""
    for name, value in (("start_step", start_step), ("epochs", epochs)):
        validation.check_int(name, value, minimum=0)
    for name, value in (("steps_per_epoch", steps_per_epoch), ("decay_epochs", decay_epochs)):
        validation.check_positive_int(name, value)
    validation.check_number("decay", decay, positive=True)
    stages = max(1, -(-epochs // decay_epochs))
    # PiecewiseConstantDecay changes value after a boundary: the step counted `boundary` (the
    # optimizer's iterations before it) is the last at the old rate.
    boundaries = [start_step + j * decay_epochs * steps_per_epoch - 1 for j in range(1, stages)]
    values = [learning_rate * decay ** j for j in range(stages)]
    if not boundaries:  # one stage: PiecewiseConstantDecay needs a boundary
        boundaries, values = [start_step], [learning_rate, learning_rate]
    return tf_keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def set_batch_norm_statistics(model, examples):
    """Set every batch-normalization layer's test-time mean and variance to its statistics over
    `examples` in one training-mode pass, as Sønderby et al. (2016) did before testing a Ladder
    VAE, instead of the moving averages training leaves (which trail the weights). Returns how
    many layers it set; a model without batch normalization is left as it is.

    Args:
        model: a tfvae model.
        examples: [n, *input_shape] examples (the training set), passed as one batch: each
            layer's statistics are those of its inputs over all of them, every layer below it
            normalized by the same pass, as in training.
    """
    norms = [layer for layer in model.submodules
             if isinstance(layer, tf_keras.layers.BatchNormalization)]
    if not norms:
        return 0
    examples = tf.convert_to_tensor(examples, tf.float32)
    validation.check_examples(examples, model.input_shape, "set_batch_norm_statistics")
    momenta = [layer.momentum for layer in norms]
    try:
        # Momentum 0: the moving averages become this batch's statistics. The pass is eager, so
        # the changed momentum reaches no traced training function.
        for layer in norms:
            layer.momentum = 0.0
        model.compute_terms(examples, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return len(norms)


# ---- reproducible epochs -----------------------------------------------------------------
def epoch_seed(seed, epoch):
    """The seed of epoch `epoch` of a run seeded `seed`: an unsigned 32-bit hash of the pair."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


def epoch_batches(examples, batch_size, seed, initial_epoch, epochs, binarize=None,
                  drop_remainder=False):
    """Batches for epochs initial_epoch..epochs-1 as one dataset, and the steps per epoch.

    Epoch e shuffles `examples` with epoch_seed(seed, e) and, with binarize="dynamic", draws
    Bernoulli(x) bits from a stateless seed (epoch_seed(seed, e), batch index): its batches are
    the same whether or not the epochs before it ran in this process.

    Args:
        examples: a tf.data.Dataset of single examples, unshuffled (e.g. `tfvae.data.load(...,
            batch_size=None, shuffle=False)`; static binarization belongs there).
        binarize: None or "dynamic".
        drop_remainder: drop the last partial batch (TPUs want static shapes).
    """
    from tfvae import data

    if binarize not in (None, "dynamic"):
        raise ValueError(f"binarize={binarize!r}: epoch_batches binarizes dynamically only "
                         "(static bits are drawn once, in tfvae.data.load)")
    dtype = getattr(examples.element_spec, "dtype", tf.float32)
    if binarize == "dynamic" and not dtype.is_floating:
        raise ValueError(f"binarize='dynamic' draws Bernoulli(x) bits for x in [0, 1], but the "
                         f"examples are {dtype.name}: scale them first, e.g. "
                         "examples.map(lambda x: tf.cast(x, tf.float32) / 255)")
    count = int(examples.cardinality())
    if count < 0:  # unknown or infinite: count once
        count = int(examples.reduce(np.int64(0), lambda n, _: n + 1))
    if count == 0:
        raise ValueError("no training examples")
    steps = count // batch_size if drop_remainder else -(-count // batch_size)
    if steps == 0:
        raise ValueError(f"{count} examples make no full batch of {batch_size}")
    buffer = min(count, data.SHUFFLE_BUFFER)

    def one_epoch(epoch):
        s = epoch_seed(seed, epoch)
        batches = examples.shuffle(buffer, seed=s, reshuffle_each_iteration=False).batch(
            batch_size, drop_remainder=drop_remainder)
        if binarize == "dynamic":
            batches = batches.enumerate().map(
                lambda i, x: data.bernoulli_bits(x, 1, tf.stack([tf.constant(s, tf.int64), i])))
        return batches

    # One dataset per epoch, chained: tf.data takes a shuffle's seed as a Python number only.
    dataset = one_epoch(initial_epoch)
    for epoch in range(initial_epoch + 1, epochs):
        dataset = dataset.concatenate(one_epoch(epoch))
    return dataset.prefetch(tf.data.AUTOTUNE), steps


# ---- callbacks ---------------------------------------------------------------------------


def epochs_done(directory):
    """How many epochs the latest checkpoint in `directory` holds (0 when there is none)."""
    latest = tf.train.latest_checkpoint(str(directory))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


class Checkpointer(tf_keras.callbacks.Callback):
    """Saves the model and its optimizer after every epoch, and `restore(model)` brings back the
    latest; the last `max_to_keep` checkpoints are kept (named ckpt-<epochs done>).

    A checkpoint is written only when every weight is finite, and written before the `checkpoint`
    index file points to it, so the latest checkpoint is always a complete, good one.

    With `seed`, every epoch e starts by seeding TensorFlow, numpy and Python with
    epoch_seed(seed, e) and rebuilding the training function, so its random ops (posterior
    samples, a denoising autoencoder's corruption) restart from a state that depends on (seed, e)
    only: a resumed run then ends with the same weights as an uninterrupted one. That costs one
    retrace per epoch and needs the model compiled with jit_compile=False: XLA's random state
    cannot be reset (`fit_resumable` sees to both).

    Under MultiWorkerMirroredStrategy every worker saves (saving reads variables collectively)
    and only the chief's copy is kept; `directory` must be visible to every worker.

    Args:
        directory: where the checkpoints go.
        seed: the run's seed, or None not to reseed.
        run: a JSON-able description of the run (model, config, batch size...). It is stored in
            `directory`, and restoring into a run that differs raises ValueError instead of
            resuming the wrong training.
    """

    RECORD = "tfvae_run.json"

    @property
    def needs_every_step(self):
        """With a seed, one training step per call of the compiled function (under compile()'s
        default, see tfvae.callbacks.needs_every_step), whatever the other callbacks and the
        fit's length: the random ops' streams belong to the traced function, which differs with
        the count, so a run resumed with other callbacks or fewer epochs left would draw other
        noise."""
        return self.seed is not None

    def __init__(self, directory, seed=None, max_to_keep=2, run=None):
        super().__init__()
        self.directory = Path(validation.check_path("checkpoint_dir", directory))
        self.seed = None if seed is None else validation.check_int("seed", seed, minimum=0)
        self.max_to_keep = validation.check_positive_int("max_to_keep", max_to_keep)
        self.run = json.loads(json.dumps(cards.jsonable(run or {}), default=str))
        self._epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
        self._model = self._checkpoint = None
        self._managers = {}

    def _bind(self, model):
        if self._model is not model:
            self._model = model
            self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                                   epochs_done=self._epochs)
            self._managers = {}

    def _manager(self, directory):
        if directory not in self._managers:
            self._managers[directory] = tf.train.CheckpointManager(
                self._checkpoint, str(directory), max_to_keep=self.max_to_keep)
        return self._managers[directory]

    def restore(self, model):
        """Restore the latest checkpoint into the compiled `model`; returns the epochs it had
        done (0, and nothing restored, when `directory` holds no checkpoint)."""
        self._bind(model)
        record = self.directory / self.RECORD
        if record.exists() and self.run:
            stored, now = _flat(json.loads(record.read_text())), _flat(self.run)
            differ = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
            if differ:
                details = "; ".join(f"{k}: {stored.get(k)!r} there, {now.get(k)!r} now"
                                    for k in differ)
                raise ValueError(f"checkpoint_dir {self.directory} holds another run ({details}); "
                                 "use another folder, or the same settings to resume it")
        latest = tf.train.latest_checkpoint(str(self.directory))
        if latest is None:
            return 0
        _build_optimizer(model)
        status = self._checkpoint.restore(latest)
        try:
            status.assert_existing_objects_matched()
        except AssertionError as error:
            raise ValueError(f"the checkpoint {latest} does not fit this model: "
                             f"{str(error).splitlines()[0][:300]}") from None
        return int(self._epochs.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        if self.seed is not None:
            tf_keras.utils.set_random_seed(epoch_seed(self.seed, epoch))
            self.model.train_function = self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        bad = validation.non_finite_variables(self.model.variables)
        if bad:
            raise NonFiniteLossError(f"not saving epoch {epoch + 1}: non-finite values in "
                                     f"{', '.join(bad[:5])}")
        self._bind(self.model)
        self._epochs.assign(epoch + 1)
        strategy = self.model.distribute_strategy
        if getattr(strategy.extended, "should_checkpoint", True):
            record = self.directory / self.RECORD
            if self.run and not record.exists():  # before the first checkpoint it describes
                self.directory.mkdir(parents=True, exist_ok=True)
                partial = record.with_suffix(".tmp")
                partial.write_text(json.dumps(self.run, indent=1))
                os.replace(partial, record)
            self._manager(self.directory).save(checkpoint_number=epoch + 1)
        else:  # a non-chief worker: save (collectively) to a folder of its own, then drop it
            task = getattr(getattr(strategy, "cluster_resolver", None), "task_id", 0)
            scratch = self.directory / f".worker-{task}"
            self._manager(scratch).save(checkpoint_number=epoch + 1)
            shutil.rmtree(scratch, ignore_errors=True)
            self._managers.pop(scratch, None)


class NonFiniteGuard(tf_keras.callbacks.Callback):
    """Stops training at the first NaN or infinite loss (checked after every step) or weight
    (checked after every epoch) with a `NonFiniteLossError` that says what happened and what was
    kept. Given the run's `Checkpointer`, it restores the model from the last good checkpoint,
    which stays on disk; put it before the Checkpointer in the callbacks, so a bad epoch is never
    saved.

    Example:
        model.fit(data, epochs=10, callbacks=[NonFiniteGuard()])
    """

    #: right at any steps_per_execution: the loss it reads is the epoch's running mean, which
    #: stays non-finite once a step's loss was, so it only names the steps of the call that met it
    needs_every_step = False

    def __init__(self, checkpointer=None):
        super().__init__()
        self.checkpointer = checkpointer
        self._epoch = self._steps_seen = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._steps_seen = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        # With steps_per_execution > 1 Keras calls this once per call of the compiled function,
        # `batch` being the call's last step: the loss went bad in one of the steps since the last.
        first, last, self._steps_seen = self._steps_seen + 1, batch + 1, batch + 1
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            steps = f"step {last}" if first >= last else f"one of steps {first}-{last}"
            self._stop(f"the loss was {float(loss)} at {steps} of epoch {self._epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        bad = validation.non_finite_variables(self.model.variables)
        if bad:
            self._stop(f"non-finite weights ({', '.join(bad[:3])}) after epoch {epoch + 1}")

    def _stop(self, what):
        self.model.stop_training = True
        kept = "no checkpoint had been written yet"
        if self.checkpointer is not None:
            done = self.checkpointer.restore(self.model)
            if done:
                kept = (f"the last good checkpoint (after epoch {done}, in "
                        f"{self.checkpointer.directory}) is kept and the weights were restored "
                        "from it")
        raise NonFiniteLossError(
            f"training stopped: {what}. Nothing non-finite was saved or exported; {kept}. Try a "
            "lower learning rate, gradient clipping (clip_norm, --clip-norm) or float32 instead "
            "of mixed precision, and check the data for NaN or inf.")


# ---- the resumable loop ------------------------------------------------------------------
def fit_resumable(model, examples, *, epochs, batch_size, checkpoint_dir, seed=0, binarize=None,
                  drop_remainder=False, callbacks=(), verbose="auto", run=None):
    """Train the compiled `model` for `epochs` epochs in all, checkpointing after each epoch in
    `checkpoint_dir` and first resuming from its latest checkpoint if there is one.

    A run killed at any point and started again with the same arguments ends with the same
    weights as an uninterrupted run (see `Checkpointer`; the training step runs without XLA and,
    unless compile() was given a steps_per_execution, one step per call).
    A non-finite loss stops it with `NonFiniteLossError`, the last good checkpoint restored.

    Args:
        model: a compiled tfvae model.
        examples: a tf.data.Dataset of single, unshuffled examples (see `epoch_batches`).
        epochs: the total number of epochs, counting those already done.
        batch_size: the global batch size (split among the replicas).
        checkpoint_dir: the run's folder; created if needed.
        seed: the run's seed: initial weights come from the caller, everything random after
            that from here.
        binarize: None or "dynamic" (see `epoch_batches`).
        callbacks: more Keras callbacks.
        run: extra JSON-able facts that must match on resume (e.g. the dataset's name).

    Returns:
        The `History` of the epochs run by this call (empty if the run was complete).
    """
    epochs = validation.check_int("epochs", epochs, minimum=1)
    batch_size = validation.check_positive_int("batch_size", batch_size)
    seed = validation.check_int("seed", seed, minimum=0)
    if getattr(model, "optimizer", None) is None:
        raise ValueError("fit_resumable needs a compiled model: call model.compile() first")
    record = {"model": getattr(model, "registry_name", type(model).__name__),
              "config": model.get_config(), "seed": seed, "batch_size": batch_size,
              "binarize": binarize, "precision": model.dtype_policy.name,
              "optimizer": _optimizer_record(model.optimizer), **(run or {})}
    checkpointer = Checkpointer(checkpoint_dir, seed=seed, run=record)
    done = checkpointer.restore(model)
    history = tf_keras.callbacks.History()
    history.history = {}
    if done >= epochs:
        return history
    model.jit_compile = False  # XLA's random state cannot be reset between epochs
    tf_keras.utils.set_random_seed(seed)  # the shuffles' seeds combine with the global seed
    dataset, steps = epoch_batches(examples, batch_size, seed, done, epochs, binarize,
                                   drop_remainder)
    guard = NonFiniteGuard(checkpointer)
    return model.fit(dataset, initial_epoch=done, epochs=epochs, steps_per_epoch=steps,
                     callbacks=[guard, checkpointer, *callbacks], verbose=verbose)


def _build_optimizer(model):
    """Create the optimizer's slots now, so that restoring fills them at once."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if isinstance(optimizer, tf_keras.optimizers.Optimizer) and not getattr(optimizer, "_built",
                                                                              False):
        with model.distribute_strategy.scope():
            optimizer.build(model.trainable_variables)


def _optimizer_record(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    config = inner.get_config()
    return {"class": type(inner).__name__,
            **{k: config.get(k) for k in ("learning_rate", "clipnorm", "global_clipnorm",
                                          "clipvalue")}}


def _flat(record):
    """{"config": {"latent_dim": 2}} -> {"config.latent_dim": 2}, to name what differs."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in _flat(value).items()})
        else:
            flat[key] = value
    return flat
