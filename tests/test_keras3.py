"""Keras 3 beside tfvae's tf_keras models (tfvae.compat; TF_USE_LEGACY_KERAS in tfvae/__init__).

Each scenario runs in a fresh Python, since what `tf.keras` means is fixed when TensorFlow is
imported: one where TensorFlow comes first, as in Colab, so that `tf.keras` is Keras 3 and
tfvae converts its optimizers and callbacks; one where tfvae comes first, so that `tf.keras` is
tf_keras. Each script does many checks and prints them as one JSON line, which the tests read.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The machine may be busy with other work: these bound a hang, not the expected time.
TIMEOUT = 900


def run_script(source, tmp_path, **env):
    """Run `source` in a new Python (the repository importable, TF_USE_LEGACY_KERAS unset unless
    given: the pytest process may have set it by importing tfvae) and return its JSON line."""
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_USE_LEGACY_KERAS"}
    environment.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(REPO),
                                                                os.environ.get("PYTHONPATH")])),
                       **env)
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path,
                            env=environment, capture_output=True, text=True, timeout=TIMEOUT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, (
        f"exit {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-6000:]}")
    return json.loads(lines[-1])


# ---- TensorFlow first: tf.keras is Keras 3 -------------------------------------------------
KERAS3_FIRST = r'''
import importlib.util, json, os, sys
from pathlib import Path

import numpy as np
import tensorflow as tf                                   # first, as in Colab

out = {"keras3": tf.keras.__version__.startswith("3")
                 and type(tf.keras.optimizers.Adam()).__module__.startswith("keras.")}
import tf_keras
import tfvae
from tfvae import compat

out["env_after_import"] = os.environ.get("TF_USE_LEGACY_KERAS")
tmp = Path(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.uniform(size=(64, 8, 8, 1)).astype("float32")
K = tf.keras


def vae():
    return tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))


def error_of(call):
    try:
        call()
    except Exception as error:  # the test checks the type and the message
        return [type(error).__name__, str(error)]
    return None


def lr_of(model):
    return float(tf_keras.backend.get_value(model.optimizer.learning_rate))


# Optimizer with a float learning rate and clipping: converted, same values, trains.
model = vae()
model.compile(optimizer=K.optimizers.Adam(1e-3, clipnorm=1.0, beta_1=0.8))
opt = model.optimizer
history = model.fit(x, epochs=2, batch_size=32, verbose=0)
out["adam"] = {"module": type(opt).__module__, "class": type(opt).__name__,
               "lr": lr_of(model), "clipnorm": opt.clipnorm, "beta_1": float(opt.beta_1),
               "steps": int(opt.iterations.numpy()), "loss": history.history["loss"]}

# Optimizer with a schedule: the tf_keras schedule with the same config, trains.
schedule = K.optimizers.schedules.ExponentialDecay(0.01, decay_steps=10, decay_rate=0.5)
sgd_model = vae()
# (jit_compile=False from here on: XLA's compile time, paid per model, is what a test waits for)
sgd_model.compile(optimizer=K.optimizers.SGD(schedule, momentum=0.9, global_clipnorm=2.0),
                  jit_compile=False)
sgd = sgd_model.optimizer
history = sgd_model.fit(x, epochs=1, batch_size=32, verbose=0)
lr = sgd._learning_rate
out["sgd"] = {"class": type(sgd).__name__, "module": type(sgd).__module__,
              "schedule": type(lr).__module__ + "." + type(lr).__name__,
              "same_config": lr.get_config() == schedule.get_config(),
              "momentum": float(sgd.momentum), "global_clipnorm": sgd.global_clipnorm,
              "loss": history.history["loss"]}

adamw = K.optimizers.AdamW(2e-3, weight_decay=0.01, epsilon=1e-6)
adamw.exclude_from_weight_decay(var_names=["bias"])
twin = compat.to_tf_keras_optimizer(adamw)
out["adamw"] = {"class": type(twin).__name__, "weight_decay": twin.weight_decay,
                "epsilon": twin.epsilon, "excluded": twin._exclude_from_weight_decay_names}

# Every optimizer and schedule with a twin converts to it.
out["optimizers"] = {name: type(compat.to_tf_keras_optimizer(getattr(K.optimizers, name)()))
                     .__module__ for name in compat.OPTIMIZERS}
schedules = {
    "ExponentialDecay": K.optimizers.schedules.ExponentialDecay(0.1, 5, 0.9, staircase=True),
    "PiecewiseConstantDecay": K.optimizers.schedules.PiecewiseConstantDecay([10], [0.1, 0.01]),
    "CosineDecay": K.optimizers.schedules.CosineDecay(0.1, 100, alpha=0.1, warmup_target=0.2,
                                                       warmup_steps=5),
    "InverseTimeDecay": K.optimizers.schedules.InverseTimeDecay(0.1, 5, 0.5),
    "PolynomialDecay": K.optimizers.schedules.PolynomialDecay(0.1, 50, 0.001, power=2.0),
    "CosineDecayRestarts": K.optimizers.schedules.CosineDecayRestarts(0.1, 20, t_mul=3.0),
}
out["schedules"] = {}
for name, keras3 in schedules.items():
    twin = compat.to_tf_keras_schedule(keras3)
    out["schedules"][name] = {
        "module": type(twin).__module__, "class": type(twin).__name__,
        "same_config": twin.get_config() == keras3.get_config(),
        "same_values": bool(np.allclose([float(twin(s)) for s in (0, 7, 30)],
                                        [float(keras3(s)) for s in (0, 7, 30)]))}

# Callbacks: each standard one works through its tf_keras twin and does its job.
model = vae()
model.compile(optimizer=K.optimizers.Adam(1e-3), jit_compile=False)
start = model.get_weights()

stop = K.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
history = model.fit(x, epochs=6, batch_size=32, verbose=0, callbacks=[stop])
out["early_stopping"] = {"epochs": len(history.history["loss"]),
                         "stopped_epoch": stop.stopped_epoch}

checkpoint = K.callbacks.ModelCheckpoint(str(tmp / "model.keras"), monitor="loss")
weights = K.callbacks.ModelCheckpoint(str(tmp / "ckpt.weights.h5"), monitor="loss",
                                      save_weights_only=True, save_best_only=True)
csv = K.callbacks.CSVLogger(str(tmp / "log.csv"), separator=";")
seen = {"epochs": [], "batches": 0}
lam = K.callbacks.LambdaCallback(
    on_epoch_end=lambda epoch, logs: seen["epochs"].append(epoch),
    on_train_batch_end=lambda batch, logs: seen.__setitem__("batches", seen["batches"] + 1))
backup = K.callbacks.BackupAndRestore(str(tmp / "backup"), delete_checkpoint=False)
mixed = tf_keras.callbacks.LambdaCallback(on_train_end=lambda logs: seen.setdefault("tf_keras", 1))
history = model.fit(x, epochs=3, batch_size=32, verbose=0,
                    callbacks=[checkpoint, weights, csv, lam, backup, mixed])
rows = (tmp / "log.csv").read_text().splitlines()
out["files"] = {
    "model.keras": (tmp / "model.keras").is_file(),
    "weights": (tmp / "ckpt.weights.h5").is_file(),
    "csv_rows": len(rows) - 1, "csv_header": rows[0],
    "backup": sorted(p.name for p in (tmp / "backup").iterdir())
              if (tmp / "backup").is_dir() else None,
}
out["lambda"] = seen

# TensorBoard's scalars need the tensorboard package, which TensorFlow no longer installs.
board = K.callbacks.TensorBoard(log_dir=str(tmp / "board"), histogram_freq=1, update_freq=2)
twin = compat.to_tf_keras_callback(board)
out["tensorboard"] = {"module": type(twin).__module__, "log_dir": twin.log_dir,
                      "histogram_freq": twin.histogram_freq, "update_freq": twin.update_freq,
                      "installed": importlib.util.find_spec("tensorboard") is not None}
if out["tensorboard"]["installed"]:
    model.fit(x, epochs=1, batch_size=32, verbose=0, callbacks=[board])
    out["tensorboard"]["events"] = sorted(
        {p.parent.name for p in (tmp / "board").rglob("events.out.tfevents.*")})

model.optimizer.learning_rate.assign(1e-3)
plateau = K.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
model.fit(x, epochs=3, batch_size=32, verbose=0, callbacks=[plateau])
out["plateau_lr"] = lr_of(model)

scheduler = K.callbacks.LearningRateScheduler(lambda epoch, lr: 0.005)
model.fit(x, epochs=1, batch_size=32, verbose=0, callbacks=[scheduler])
out["scheduler_lr"] = lr_of(model)

# callbacks as fit's positional argument (x, y, batch_size, epochs, verbose, callbacks)
positional = K.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
history = model.fit(x, None, 32, 6, 0, [positional])
out["positional_epochs"] = len(history.history["loss"])


def poison(batch, logs):
    # NaN weights after the first step: the next step's loss is NaN
    if batch == 0:
        for variable in model.trainable_variables:
            variable.assign(tf.fill(variable.shape, float("nan")))


history = model.fit(x, epochs=4, batch_size=32, verbose=0,
                    callbacks=[K.callbacks.LambdaCallback(on_train_batch_end=poison),
                               K.callbacks.TerminateOnNaN()])
out["nan"] = {"epochs": len(history.history["loss"]),
              "finite": bool(np.isfinite(history.history["loss"][-1]))}
model.set_weights(start)
raised = error_of(lambda: model.fit(
    x, epochs=2, batch_size=32, verbose=0,
    callbacks=[K.callbacks.LambdaCallback(on_train_batch_end=poison),
               K.callbacks.TerminateOnNaN(raise_error=True)]))
out["nan_raise"] = raised[0] if raised else None
model.set_weights(start)


# What is refused, and what the errors say.
class MyCallback(K.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        pass


class MyEarlyStopping(K.callbacks.EarlyStopping):
    pass


class MySchedule(K.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        return 0.01


stepped = K.optimizers.Adam()
stepped.iterations.assign(3)
out["errors"] = {
    "custom_callback": error_of(lambda: model.fit(x, epochs=1, verbose=0,
                                                  callbacks=[MyCallback()])),
    "custom_early_stopping": error_of(lambda: model.fit(x, epochs=1, verbose=0,
                                                        callbacks=[MyEarlyStopping()])),
    "remote_monitor": error_of(lambda: model.fit(x, epochs=1, verbose=0,
                                                 callbacks=[K.callbacks.RemoteMonitor()])),
    "double_checkpoint": error_of(lambda: model.fit(
        x, epochs=1, verbose=0,
        callbacks=[K.callbacks.BackupAndRestore(str(tmp / "b2"), double_checkpoint=True)])),
    "no_twin": error_of(lambda: vae().compile(optimizer=K.optimizers.Lamb())),
    "subclass_optimizer": error_of(lambda: vae().compile(
        optimizer=type("MyAdam", (K.optimizers.Adam,), {})())),
    "loss_scale": error_of(lambda: vae().compile(
        optimizer=K.optimizers.LossScaleOptimizer(K.optimizers.Adam()))),
    "stepped": error_of(lambda: vae().compile(optimizer=stepped)),
    "schedule": error_of(lambda: compat.to_tf_keras_optimizer(K.optimizers.Adam(MySchedule()))),
    "function_rate": error_of(lambda: compat.to_tf_keras_optimizer(K.optimizers.Adam(lambda: 0.1))),
    "accumulation": error_of(lambda: compat.to_tf_keras_optimizer(
        K.optimizers.Adam(gradient_accumulation_steps=4))),
}
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def keras3(tmp_path_factory):
    return run_script(KERAS3_FIRST, tmp_path_factory.mktemp("keras3"))


def test_tensorflow_first_means_keras3_and_tfvae_leaves_it(keras3):
    assert keras3["keras3"] is True
    assert keras3["env_after_import"] is None


def test_keras3_optimizer_becomes_its_tf_keras_twin_and_trains(keras3):
    adam = keras3["adam"]
    assert adam["module"].startswith("tf_keras.") and adam["class"] == "Adam"
    assert adam["lr"] == pytest.approx(1e-3)
    assert adam["clipnorm"] == 1.0 and adam["beta_1"] == pytest.approx(0.8)
    assert adam["steps"] == 4 and all(map(_finite, adam["loss"]))


def test_keras3_schedule_becomes_its_tf_keras_twin(keras3):
    sgd = keras3["sgd"]
    assert sgd["module"].startswith("tf_keras.") and sgd["class"] == "SGD"
    assert sgd["schedule"].startswith("tf_keras.") and sgd["schedule"].endswith(".ExponentialDecay")
    assert sgd["same_config"] and sgd["momentum"] == pytest.approx(0.9)
    assert sgd["global_clipnorm"] == 2.0 and all(map(_finite, sgd["loss"]))
    for name, schedule in keras3["schedules"].items():
        assert schedule["module"].startswith("tf_keras.") and schedule["class"] == name
        assert schedule["same_config"] and schedule["same_values"], name


def test_keras3_optimizer_hyperparameters_carry_over(keras3):
    assert keras3["adamw"] == {"class": "AdamW", "weight_decay": 0.01, "epsilon": 1e-6,
                               "excluded": ["bias"]}


def test_every_keras3_optimizer_with_a_twin_converts(keras3):
    assert {"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Adadelta", "Adamax", "Nadam",
            "Ftrl"} <= set(keras3["optimizers"])
    assert all(module.startswith("tf_keras.") for module in keras3["optimizers"].values())


def test_keras3_callbacks_do_their_jobs(keras3):
    assert keras3["early_stopping"]["epochs"] < 6
    assert keras3["early_stopping"]["stopped_epoch"] > 0   # copied back onto the Keras 3 object
    assert keras3["positional_epochs"] < 6
    files = keras3["files"]
    assert files["model.keras"] and files["weights"]
    assert files["csv_rows"] == 3 and files["csv_header"].startswith("epoch;")
    assert files["backup"]
    assert keras3["lambda"]["epochs"] == [0, 1, 2] and keras3["lambda"]["batches"] == 6
    assert keras3["lambda"]["tf_keras"] == 1               # tf_keras callbacks alongside
    assert keras3["plateau_lr"] < 1e-3 * 0.9
    assert keras3["scheduler_lr"] == pytest.approx(0.005)
    assert keras3["nan"] == {"epochs": 1, "finite": False}
    assert keras3["nan_raise"] == "NonFiniteLossError"


def test_keras3_tensorboard_writes_events(keras3):
    board = keras3["tensorboard"]
    assert board["module"].startswith("tf_keras.") and board["log_dir"].endswith("board")
    assert board["histogram_freq"] == 1 and board["update_freq"] == 2
    if not board["installed"]:
        pytest.skip("writing TensorBoard scalars needs the tensorboard package (not installed)")
    assert "train" in board["events"]


@pytest.mark.parametrize("case, kind, words", [
    ("custom_callback", "WrongTypeError", "subclass tf_keras.callbacks.Callback instead"),
    ("custom_early_stopping", "WrongTypeError",
     "subclass tf_keras.callbacks.EarlyStopping instead"),
    ("remote_monitor", "WrongTypeError", "tf_keras.callbacks.RemoteMonitor"),
    ("double_checkpoint", "ValueError", "double_checkpoint=False"),
    ("no_twin", "WrongTypeError", "tf_keras.optimizers.AdamW"),
    ("subclass_optimizer", "WrongTypeError", "subclass tf_keras.optimizers.Adam instead"),
    ("loss_scale", "WrongTypeError", "tfvae.training.set_precision"),
    ("stepped", "ValueError", "already taken 3 steps"),
    ("schedule", "WrongTypeError", "tf_keras.optimizers.schedules.LearningRateSchedule"),
    ("function_rate", "WrongTypeError", "tf_keras.optimizers.schedules.LearningRateSchedule"),
    ("accumulation", "ValueError", "gradient_accumulation_steps"),
])
def test_keras3_objects_without_a_twin_get_clear_errors(keras3, case, kind, words):
    error = keras3["errors"][case]
    assert error is not None, f"{case}: no error"
    assert error[0] == kind and words in error[1], error


def _finite(value):
    return value == value and abs(value) != float("inf")


# ---- tfvae first: tf.keras is tf_keras --------------------------------------------------
TFVAE_FIRST = r'''
import json, os, sys
from pathlib import Path

import numpy as np
import tfvae                                              # first

out = {"env": os.environ.get("TF_USE_LEGACY_KERAS"), "tf_imported": "tensorflow" in sys.modules}
import tensorflow as tf
import tf_keras

out["adam_is_tf_keras"] = tf.keras.optimizers.Adam is tf_keras.optimizers.Adam
out["callback_is_tf_keras"] = tf.keras.callbacks.EarlyStopping is tf_keras.callbacks.EarlyStopping
tmp = Path(sys.argv[1])
x = np.random.default_rng(0).uniform(size=(64, 8, 8, 1)).astype("float32")
model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(8,))
optimizer = tf.keras.optimizers.Adam(1e-3, clipnorm=1.0)
model.compile(optimizer=optimizer)
out["same_optimizer"] = model.optimizer is optimizer
stop = tf.keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=1e9)
history = model.fit(x, epochs=6, batch_size=32, verbose=0,
                    callbacks=[stop, tf.keras.callbacks.CSVLogger(str(tmp / "log.csv"))])
out["epochs"] = len(history.history["loss"])
out["stopped_epoch"] = stop.stopped_epoch
out["csv"] = (tmp / "log.csv").is_file()
out["keras3_imported"] = "keras" in sys.modules
print(json.dumps(out))
'''


def test_tfvae_first_makes_tf_keras_be_tf_keras(tmp_path):
    out = run_script(TFVAE_FIRST, tmp_path)
    assert out["env"] == "1" and not out["tf_imported"]
    assert out["adam_is_tf_keras"] and out["callback_is_tf_keras"]
    assert out["same_optimizer"]
    assert out["epochs"] < 6 and out["stopped_epoch"] > 0 and out["csv"]
    # tfvae.compat recognises Keras 3 by module names and never imports it itself
    assert not out["keras3_imported"]


@pytest.mark.parametrize("given, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_import_tfvae_sets_legacy_keras_unless_told_otherwise(tmp_path, given, expected):
    # Importing tfvae imports no TensorFlow, so this is quick.
    source = ('import json, os, sys\nimport tfvae\n'
              'print(json.dumps({"env": os.environ.get("TF_USE_LEGACY_KERAS"), '
              '"tf": "tensorflow" in sys.modules}))\n')
    env = {} if given is None else {"TF_USE_LEGACY_KERAS": given}
    assert run_script(source, tmp_path, **env) == {"env": expected, "tf": False}


def test_non_keras3_objects_pass_through():
    from tfvae import compat  # before tf_keras: TensorFlow then comes up with tf.keras = tf_keras
    import tf_keras

    adam = tf_keras.optimizers.Adam()
    stop = tf_keras.callbacks.EarlyStopping()
    callbacks = [stop]
    for value in (None, "adam", adam, stop, 0.1):
        assert compat.to_tf_keras_optimizer(value) is value
        assert compat.to_tf_keras_callback(value) is value
    assert compat.to_tf_keras_callbacks(callbacks) is callbacks
    assert compat.to_tf_keras_callbacks(None) is None
    assert not compat.is_keras3(adam)
