"""Keras 3 optimizers and callbacks turned into their tf_keras twins, for tfvae's tf_keras models.

In a notebook that imported TensorFlow before tfvae (Colab does), `tf.keras` is Keras 3, while
tfvae's models are tf_keras (Keras 2) models, as TensorFlow Probability's layers need. A tf_keras
model cannot step a Keras 3 optimizer nor call Keras 3 callbacks, so `compile` and `fit` pass
what they are given through this module: a standard Keras 3 optimizer (with its learning-rate
schedule) or callback becomes the tf_keras object of the same class and configuration; anything
else from Keras 3 gets an error that says what to pass instead. Objects that are not from Keras 3
pass through untouched.

    import tensorflow as tf                      # tf.keras is Keras 3 here
    import tfvae
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-4, clipnorm=1.0))   # a tf_keras Adam
    model.fit(x, epochs=50, callbacks=[tf.keras.callbacks.EarlyStopping(monitor="loss")])

The same functions can be called directly: `to_tf_keras_optimizer(tf.keras.optimizers.SGD(0.1))`.

Keras 3 is recognised by the module of an object's classes ("keras." but not "tf_keras."), so this
module never imports Keras 3 itself: it costs nothing where Keras 3 is not used.
"""
import inspect

import numpy as np
import tf_keras

from tfvae import validation

#: Keras 3 optimizers with a tf_keras twin of the same name and hyperparameters
OPTIMIZERS = tuple(name for name in ("Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta",
                                     "Adamax", "Nadam", "Ftrl", "Lion", "Adafactor")
                   if hasattr(tf_keras.optimizers, name))
#: Keras 3 learning-rate schedules with a tf_keras twin
SCHEDULES = ("ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay", "InverseTimeDecay",
             "PolynomialDecay", "CosineDecayRestarts")
# Keras 3 optimizers without a twin -> the tf_keras optimizer closest to them
_NEAREST_OPTIMIZER = {"Lamb": "AdamW", "ScheduleFreeAdamW": "AdamW", "Muon": "Adam"}
# State that a Keras 3 callback's user may read after fit (early_stopping.stopped_epoch...):
# copied back from the twin that did the work when training ends.
_STATE = ("wait", "stopped_epoch", "best", "best_epoch", "best_weights", "cooldown_counter")


def _keras3_base(obj):
    """The first class of obj's type (itself or a base) that comes from Keras 3, or None."""
    for cls in type(obj).__mro__:
        module = getattr(cls, "__module__", None) or ""
        if module == "keras" or module.startswith("keras."):
            return cls
    return None


def is_keras3(obj):
    """Whether obj is a Keras 3 object (of a Keras 3 class or a subclass of one).

    Example:
        is_keras3(tf.keras.optimizers.Adam())   # True where tf.keras is Keras 3
        is_keras3(tf_keras.optimizers.Adam())   # False
    """
    return _keras3_base(obj) is not None


def _is_keras3_builtin(obj):
    """Of a class that Keras 3 itself defines (not a user's subclass of one)."""
    base = _keras3_base(obj)
    return base is not None and base is type(obj)


# ---- optimizers ----------------------------------------------------------------------------
def to_tf_keras_schedule(schedule):
    """The tf_keras twin of a Keras 3 learning-rate schedule (same class and config); anything
    that is not from Keras 3 (a float, a tf_keras schedule, a callable) as it is.

    Example:
        to_tf_keras_schedule(tf.keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9))
        # -> tf_keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.9)
    """
    if not is_keras3(schedule):
        return schedule
    name = type(schedule).__name__
    if not _is_keras3_builtin(schedule) or name not in SCHEDULES:
        raise validation.WrongTypeError(
            f"learning_rate is a Keras 3 schedule ({type(schedule).__module__}.{name}), which "
            f"tfvae's tf_keras optimizers cannot call: subclass "
            f"tf_keras.optimizers.schedules.LearningRateSchedule instead, or use one of "
            f"tf_keras.optimizers.schedules.{{{', '.join(SCHEDULES)}}}")
    twin = getattr(tf_keras.optimizers.schedules, name)
    config = schedule.get_config()
    try:
        return twin.from_config(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the Keras 3 {name} {config} does not fit "
                         f"tf_keras.optimizers.schedules.{name} ({error}): build the tf_keras "
                         f"schedule yourself") from None


def _fail_optimizer(optimizer, base):
    name = type(optimizer).__name__
    if name == "LossScaleOptimizer":
        raise validation.WrongTypeError(
            "optimizer is a Keras 3 LossScaleOptimizer; tfvae's models train with tf_keras "
            "optimizers: call tfvae.training.set_precision('mixed_float16') before building the "
            "model, and compile() wraps a tf_keras optimizer (e.g. tf_keras.optimizers.Adam) in "
            "tf_keras' own LossScaleOptimizer")
    available = ", ".join(OPTIMIZERS)
    if base is not type(optimizer):
        twin = base.__name__ if base.__name__ in OPTIMIZERS else "Optimizer"
        raise validation.WrongTypeError(
            f"optimizer is a {name}, a subclass of Keras 3's {base.__name__}, which tfvae's "
            f"tf_keras models cannot step: subclass tf_keras.optimizers.{twin} instead")
    nearest = _NEAREST_OPTIMIZER.get(name, "Adam")
    raise validation.WrongTypeError(
        f"optimizer is a Keras 3 {name}, which has no tf_keras twin: use "
        f"tf_keras.optimizers.{nearest} (or one of {available})")


def to_tf_keras_optimizer(optimizer):
    """The tf_keras twin of a Keras 3 optimizer: the same class, learning rate (a float, or the
    schedule's tf_keras twin), clipping and other hyperparameters. Anything that is not from
    Keras 3 (a tf_keras optimizer, a name such as "adam", None) is returned as it is.

    A Keras 3 optimizer that has taken steps is refused (its moments cannot move to tf_keras),
    and so are ones without a twin, a user's subclass and a LossScaleOptimizer (use
    `tfvae.training.set_precision`), each with an error naming what to pass instead.

    Example:
        to_tf_keras_optimizer(tf.keras.optimizers.Adam(1e-4, clipnorm=1.0))
        # -> tf_keras.optimizers.Adam(1e-4, clipnorm=1.0)
    """
    base = _keras3_base(optimizer)
    if base is None:
        return optimizer
    name = type(optimizer).__name__
    if base is not type(optimizer) or name not in OPTIMIZERS:
        _fail_optimizer(optimizer, base)
    steps = int(np.asarray(optimizer.iterations))
    if steps:
        raise ValueError(
            f"optimizer is a Keras 3 {name} that has already taken {steps} steps; its state "
            f"cannot move to the tf_keras optimizer tfvae's models need: pass a new "
            f"tf_keras.optimizers.{name}(...) (or a new, unused tf.keras.optimizers.{name})")
    # The schedule itself, first: get_config would serialize it (and fail on one without
    # get_config before the clear error below could be given).
    rate = getattr(optimizer, "_learning_rate", None)
    schedule = None
    if callable(rate):  # a schedule or a function; a float is kept in a (non-callable) variable
        if not is_keras3(rate):
            raise validation.WrongTypeError(
                f"optimizer: the Keras 3 {name}'s learning_rate is a {type(rate).__name__}, "
                f"which tf_keras optimizers cannot take: pass tf_keras.optimizers.{name} a float "
                f"or a tf_keras.optimizers.schedules.LearningRateSchedule")
        schedule = to_tf_keras_schedule(rate)
    config = optimizer.get_config()
    config["learning_rate"] = (schedule if schedule is not None
                               else float(config["learning_rate"]))
    for key, fix in (("loss_scale_factor",
                      "use tfvae.training.set_precision('mixed_float16'), which scales the loss "
                      "dynamically"),
                     ("gradient_accumulation_steps",
                      "tf_keras has no gradient accumulation: use a larger batch")):
        if config.pop(key, None) is not None:
            raise ValueError(f"optimizer: the Keras 3 {name}'s {key}={getattr(optimizer, key)!r} "
                             f"has no tf_keras equivalent: {fix}")
    twin = getattr(tf_keras.optimizers, name)
    unknown = sorted(set(config) - _arguments(twin))
    if unknown:
        raise ValueError(f"optimizer: the Keras 3 {name}'s {', '.join(unknown)} have no "
                         f"equivalent in tf_keras.optimizers.{name}: build that one yourself")
    converted = twin.from_config(config)
    _copy_weight_decay_exclusions(optimizer, converted)
    return converted


def _arguments(cls):
    """The keyword arguments cls's constructor takes, its bases' included (tf_keras optimizers
    pass **kwargs on to their base class)."""
    names = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            names.update(name for name, parameter in inspect.signature(init).parameters.items()
                         if parameter.kind is parameter.POSITIONAL_OR_KEYWORD
                         or parameter.kind is parameter.KEYWORD_ONLY)
    return names - {"self"}


def _copy_weight_decay_exclusions(optimizer, converted):
    """Carry `exclude_from_weight_decay(var_names=...)` over (Keras 3 keeps the names as one
    regular expression, which tf_keras' `re.search` per name accepts as it is)."""
    pattern = getattr(optimizer, "_exclude_from_weight_decay_pattern", None)
    if pattern is not None:
        converted.exclude_from_weight_decay(var_names=[pattern.pattern])
    if getattr(optimizer, "_exclude_from_weight_decay", None):
        raise ValueError(
            "optimizer: the Keras 3 optimizer's exclude_from_weight_decay(var_list=...) names "
            "variables by Keras 3's keys, which tf_keras cannot read: call "
            "exclude_from_weight_decay(var_list=...) on a tf_keras optimizer instead")


# ---- callbacks -----------------------------------------------------------------------------
def _monitor(callback):
    return {"monitor": callback.monitor, "mode": callback.mode, "verbose": callback.verbose}


def _early_stopping(callback):
    return tf_keras.callbacks.EarlyStopping(
        min_delta=callback.min_delta, patience=callback.patience, baseline=callback.baseline,
        restore_best_weights=callback.restore_best_weights,
        start_from_epoch=callback.start_from_epoch, **_monitor(callback))


def _model_checkpoint(callback):
    # Keras 3 keeps initial_value_threshold as the best value so far, `best`.
    return tf_keras.callbacks.ModelCheckpoint(
        callback.filepath, save_best_only=callback.save_best_only,
        save_weights_only=callback.save_weights_only, save_freq=callback.save_freq,
        initial_value_threshold=callback.best, **_monitor(callback))


def _tensorboard(callback):
    start, stop = callback._start_batch, callback._stop_batch
    return tf_keras.callbacks.TensorBoard(
        log_dir=callback.log_dir, histogram_freq=callback.histogram_freq,
        write_graph=callback.write_graph, write_images=callback.write_images,
        write_steps_per_second=callback.write_steps_per_second,
        update_freq=callback.update_freq, profile_batch=(start, stop) if start else 0,
        embeddings_freq=callback.embeddings_freq,
        embeddings_metadata=callback.embeddings_metadata)


def _csv_logger(callback):
    return tf_keras.callbacks.CSVLogger(callback.filename, separator=callback.sep,
                                        append=callback.append)


def _reduce_lr_on_plateau(callback):
    return tf_keras.callbacks.ReduceLROnPlateau(
        factor=callback.factor, patience=callback.patience, min_delta=callback.min_delta,
        cooldown=callback.cooldown, min_lr=callback.min_lr, **_monitor(callback))


def _terminate_on_nan(callback):
    if getattr(callback, "raise_error", False):
        # tf_keras' TerminateOnNaN only stops; tfvae's guard stops and raises
        # (tfvae.training.NonFiniteLossError, where Keras 3 raises a RuntimeError).
        from tfvae import training

        return training.NonFiniteGuard()
    return tf_keras.callbacks.TerminateOnNaN()


def _lambda_callback(callback):
    # Keras 3 sets the given functions (and any on_* keyword) as instance attributes; tf_keras'
    # LambdaCallback does the same with its keywords, so they carry over by name.
    hooks = {key: value for key, value in vars(callback).items()
             if key.startswith("on_") and callable(value)}
    return tf_keras.callbacks.LambdaCallback(**hooks)


def _backup_and_restore(callback):
    if getattr(callback, "double_checkpoint", False):
        raise ValueError("callbacks: tf_keras' BackupAndRestore has no double_checkpoint: pass "
                         "double_checkpoint=False, or use tfvae.training.fit_resumable, which "
                         "keeps the last two checkpoints")
    return _BackupAndRestore(callback.backup_dir, save_freq=callback.save_freq,
                             delete_checkpoint=callback.delete_checkpoint)


class _BackupAndRestore(tf_keras.callbacks.BackupAndRestore):
    """tf_keras' BackupAndRestore, after which the model can still `fit`: tf_keras' own deletes
    the model's `_training_state` when training ends, which the next `fit` reads."""

    def on_train_end(self, logs=None):
        model = self.model
        super().on_train_end(logs)
        if not hasattr(model, "_training_state"):
            model._training_state = None


def _learning_rate_scheduler(callback):
    return tf_keras.callbacks.LearningRateScheduler(callback.schedule, verbose=callback.verbose)


#: Keras 3 callback class -> its tf_keras twin, built from the Keras 3 object's attributes
CALLBACKS = {
    "EarlyStopping": _early_stopping,
    "ModelCheckpoint": _model_checkpoint,
    "TensorBoard": _tensorboard,
    "CSVLogger": _csv_logger,
    "ReduceLROnPlateau": _reduce_lr_on_plateau,
    "TerminateOnNaN": _terminate_on_nan,
    "LambdaCallback": _lambda_callback,
    "BackupAndRestore": _backup_and_restore,
    "LearningRateScheduler": _learning_rate_scheduler,
}


def to_tf_keras_callback(callback):
    """The tf_keras twin of a standard Keras 3 callback (CALLBACKS), built from its attributes;
    anything that is not from Keras 3 as it is. Any other Keras 3 callback, a user's subclass of
    keras.callbacks.Callback among them, gets an error naming the tf_keras class to use.

    Example:
        to_tf_keras_callback(tf.keras.callbacks.EarlyStopping(monitor="loss", patience=3))
        # -> tf_keras.callbacks.EarlyStopping(monitor="loss", patience=3)
    """
    base = _keras3_base(callback)
    if base is None:
        return callback
    name = type(callback).__name__
    if base is type(callback) and name in CALLBACKS:
        return CALLBACKS[name](callback)
    twin = f"tf_keras.callbacks.{base.__name__}"
    if not hasattr(tf_keras.callbacks, base.__name__):
        twin = "tf_keras.callbacks.Callback"
    if base is not type(callback):
        raise validation.WrongTypeError(
            f"callbacks: {name} subclasses Keras 3's keras.callbacks.{base.__name__}, which "
            f"tfvae's tf_keras models cannot call: subclass {twin} instead (the same hooks, "
            f"e.g. on_epoch_end(self, epoch, logs))")
    if twin.endswith(".Callback"):
        raise validation.WrongTypeError(
            f"callbacks: Keras 3's {name} has no tf_keras twin: write it as a subclass of "
            f"{twin}")
    raise validation.WrongTypeError(
        f"callbacks: Keras 3's {name} is not converted for tfvae's tf_keras models: pass "
        f"{twin}(...) instead")


class _ReportBack(tf_keras.callbacks.Callback):
    """Copies the twins' state (stopped_epoch, best...) onto the Keras 3 callbacks they stand
    for when training ends, where a user reads it."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs

    def on_train_end(self, logs=None):
        for original, twin in self.pairs:
            for name in _STATE:
                if hasattr(twin, name) and hasattr(original, name):
                    setattr(original, name, getattr(twin, name))


def to_tf_keras_callbacks(callbacks):
    """`fit(callbacks=...)` with every Keras 3 callback replaced by its tf_keras twin (see
    `to_tf_keras_callback`), plus one that copies the twins' state (stopped_epoch, best, wait...)
    back onto the Keras 3 objects when training ends. Without Keras 3 callbacks, `callbacks`
    as it is.

    Example (what tfvae's `fit` does with its callbacks):
        stop = tf.keras.callbacks.EarlyStopping(monitor="loss")
        callbacks = to_tf_keras_callbacks([stop])   # [tf_keras EarlyStopping, the copier]
    """
    if is_keras3(callbacks):  # tf_keras' fit also takes a single callback
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)) or not any(map(is_keras3, callbacks)):
        return callbacks
    converted = [to_tf_keras_callback(callback) for callback in callbacks]
    pairs = [(original, twin) for original, twin in zip(callbacks, converted)
             if twin is not original]
    return [*converted, _ReportBack(pairs)]
