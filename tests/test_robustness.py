"""Scale and robustness: distribution strategies, exact resume after a kill, mixed precision and
numerics, bad input at every public entry point (property-based), interrupted and corrupt
exports, and a loaded model called from many threads.

What needs a fresh process (logical devices, TF_CONFIG workers, a process to kill) runs
tests/robustness_helper.py in a subprocess.
"""
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tfvae
from tfvae import cli, exporting, speed, training, validation
from tfvae.loading import InvalidExportError
from tfvae.models.base import LatentVariableModel

HELPER = Path(__file__).parent / "robustness_helper.py"
REPO = Path(__file__).resolve().parents[1]
DIGITS = (8, 8, 1)
# Enough examples for a few hundred bad inputs in all, fast because every one fails before any
# TensorFlow work; derandomized so that CI runs the same inputs every time.
PROPERTY = dict(deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def helper(*args, env=None, **kwargs):
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, str(HELPER), *args], env=environment, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def train_command(folder, run):
    """`tfvae train` for the resume test: a VAE whose every epoch draws noise, shuffles and
    binarizes dynamically."""
    return ["train", "vae", "--take", "128", "--batch-size", "32", "--epochs", "2",
            "--latent-dim", "2", "--hidden-units", "16", "--binarize", "dynamic", "--seed", "3",
            "--checkpoint-dir", str(folder / run), "--save", str(folder / f"{run}.keras")]


@pytest.fixture(scope="module", autouse=True)
def background(request, tmp_path_factory):
    """Starts the subprocesses of the slow tests at once, so that they run while the in-process
    tests do (one test at a time leaves a core idle while it traces); the tests that collect them
    come last in this module."""
    selected = {item.name.split("[")[0] for item in request.session.items}
    folder = tmp_path_factory.mktemp("background")
    jobs = {}
    if "test_two_replicas_match_one_device_and_every_family_trains_mirrored" in selected:
        jobs["mirrored"] = helper("mirrored", str(folder / "mirrored.json"))
    if "test_two_workers_train_together_over_loopback" in selected:
        cluster = {"worker": [f"localhost:{free_port()}", f"localhost:{free_port()}"]}
        jobs["workers"] = [helper("worker", str(folder / f"w{i}.npz"), env={"TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
    if "test_a_killed_training_resumes_to_the_same_weights" in selected:
        jobs["whole"] = helper("train", *train_command(folder, "whole"))
        # Killed by itself with SIGKILL at step 2 of epoch 2 (see robustness_helper.py).
        jobs["killed"] = helper("train", *train_command(folder, "killed"),
                                env={"TFVAE_DIE_AT": "1:1"})
    yield folder, jobs
    for job in jobs.values():
        for process in job if isinstance(job, list) else [job]:
            if process.poll() is None:
                process.kill()
            process.communicate()


@pytest.fixture(scope="module")
def small_vae():
    tf_keras.utils.set_random_seed(0)
    return tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))


# ---- distribution --------------------------------------------------------------------------
def test_strategies_by_name_and_clear_errors(monkeypatch):
    assert training.strategy_from_name("default") is tf.distribute.get_strategy()
    assert training.strategy_from_name("mirrored").num_replicas_in_sync == 1  # this CPU
    with pytest.raises(ValueError, match="not one of"):
        training.strategy_from_name("horovod")
    # The TPU path exists (TPUClusterResolver); here there is no TPU and it says so.
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    with pytest.raises(ValueError, match="no TPU found"):
        training.strategy_from_name("tpu")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}')
    with pytest.raises(ValueError, match="TF_CONFIG"):
        training.strategy_from_name("multiworker")


# ---- checkpoints and resume ----------------------------------------------------------------
def test_resuming_a_different_run_is_refused(tmp_path, digits):
    examples = tf.data.Dataset.from_tensor_slices(digits)
    for latent_dim in (2, 3):
        model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=latent_dim, hidden_units=(8,))
        model.compile()
        if latent_dim == 2:
            training.fit_resumable(model, examples, epochs=1, batch_size=32, verbose=0,
                                   checkpoint_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="holds another run.*config"):
        training.fit_resumable(model, examples, epochs=2, batch_size=32, verbose=0,
                               checkpoint_dir=tmp_path / "run")


def test_dynamic_bits_of_integer_examples_are_refused_naming_the_fix():
    # Bernoulli(x) needs x in [0, 1]: 8-bit pixels would all be p >= 1.
    examples = tf.data.Dataset.from_tensor_slices(np.full((4, 8, 8, 1), 128, np.uint8))
    with pytest.raises(ValueError, match=r"uint8.*tf.cast\(x, tf.float32\) / 255"):
        training.epoch_batches(examples, 2, seed=0, initial_epoch=0, epochs=1,
                               binarize="dynamic")
    batches, steps = training.epoch_batches(examples.map(lambda x: tf.cast(x, tf.float32) / 255),
                                            2, seed=0, initial_epoch=0, epochs=1,
                                            binarize="dynamic")
    assert steps == 2 and {float(v) for b in batches for v in np.unique(b)} <= {0.0, 1.0}


# ---- mixed precision and numerics ----------------------------------------------------------
@pytest.fixture
def precision(request):
    previous = tf_keras.mixed_precision.global_policy()
    training.set_precision(request.param)
    yield request.param
    tf_keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"], indirect=True)
def test_mixed_precision_trains_without_nan(precision, digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=3, hidden_units=(32, 16))
    low = precision.split("_")[1]
    dense = model.encoder_head
    assert dense.compute_dtype == low and dense.kernel.dtype == tf.float32
    assert model.encoder(digits[:4]).dtype == low  # the layers compute in 16 bits...
    terms = model.compute_terms(tf.constant(digits[:8]), training=True)
    assert {t.dtype for t in terms.values()} == {tf.float32}  # ... log-probabilities and KL not
    model.compile(optimizer=training.make_optimizer(3e-3), jit_compile=False)
    if precision == "mixed_float16":
        assert isinstance(model.optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    losses = model.fit(digits, batch_size=16, epochs=5, verbose=0,
                       callbacks=[training.NonFiniteGuard()]).history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert not validation.non_finite_variables(model.variables)


@pytest.mark.parametrize("name", tfvae.models.names())
@pytest.mark.parametrize("precision", ["mixed_float16"], indirect=True)
def test_every_family_keeps_its_terms_in_float32_under_mixed_precision(name, precision, digits):
    model = tfvae.models.get(name, input_shape=DIGITS,
                             **tfvae.models.get_class(name).example_config)
    terms = model.compute_terms(tf.constant(digits[:8]), training=True)
    for key, value in terms.items():
        assert value.dtype == tf.float32 and np.all(np.isfinite(value.numpy())), key


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "discretized_logistic"])
def test_extreme_network_outputs_give_finite_losses_and_gradients(likelihood, digits):
    """Log-space likelihoods and floored scales: huge logits, means and vanishing raw scales
    from the networks still give finite terms and gradients."""
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,),
                             likelihood=likelihood)
    for head, value in ((model.encoder_head, 30.0), (model.decoder_head.projection, -1e4)):
        head.bias.assign(tf.fill(head.bias.shape, value))
    model.encoder_head.bias[2:].assign([-1e4, -1e4])  # posterior raw scales: floored
    x = tf.constant(digits[:8])
    with tf.GradientTape() as tape:
        terms = model.compute_terms(x, training=True)
        loss = tf.reduce_mean(terms["loss"])
    for key, value in terms.items():
        assert np.all(np.isfinite(value.numpy())), key
    gradients = tape.gradient(loss, model.trainable_variables)
    assert all(np.all(np.isfinite(g.numpy())) for g in gradients)


def test_gradient_clipping_bounds_each_update(digits):
    def step_size(clip):
        tf_keras.utils.set_random_seed(0)
        model = tfvae.models.AE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
        model.compile(optimizer=tf_keras.optimizers.SGD(1.0, global_clipnorm=clip))
        before = [v.numpy() for v in model.trainable_variables]
        model.fit(digits[:16], batch_size=16, epochs=1, verbose=0)
        return math.sqrt(sum(float(np.sum((v.numpy() - b) ** 2))
                             for v, b in zip(model.trainable_variables, before)))

    assert step_size(None) > 1.0
    assert step_size(0.01) == pytest.approx(0.01, rel=1e-3)
    assert training.make_optimizer(1e-3, clip_norm=2.0).global_clipnorm == 2.0


def test_global_norm_and_value_clipping_both_apply_the_norm_first(digits):
    """tf_keras applies only one of global_clipnorm and clipvalue; given both, the train step
    applies the global norm and then each element, as Sønderby et al.'s Ladder VAE trained."""
    x = tf.constant(digits[:16])

    def update(**clip):
        tf_keras.utils.set_random_seed(0)
        model = tfvae.models.AE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
        model.compile(optimizer=tf_keras.optimizers.SGD(1.0, **clip), jit_compile=False)
        before = [v.numpy() for v in model.trainable_variables]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.compute_terms(x, training=True)["loss"])
        gradients = [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]
        model.train_on_batch(x)
        return gradients, [b - v.numpy() for v, b in zip(model.trainable_variables, before)]

    gradients, steps = update(global_clipnorm=2.0, clipvalue=0.01)
    norm = math.sqrt(sum(float(np.sum(g ** 2)) for g in gradients))
    assert norm > 2.0  # so the norm clips, and then the value clips what is left
    expected = [np.clip(g * 2.0 / norm, -0.01, 0.01) for g in gradients]
    for step, want in zip(steps, expected):
        np.testing.assert_allclose(step, want, rtol=1e-4, atol=1e-7)
    assert max(float(np.abs(s).max()) for s in steps) == pytest.approx(0.01)
    # Either alone is Keras' own clipping, unchanged.
    _, steps = update(clipvalue=0.01)
    np.testing.assert_allclose(steps[0], np.clip(gradients[0], -0.01, 0.01), rtol=1e-4,
                               atol=1e-7)


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
    model.compile()
    good = {}

    class Diverge(tf_keras.callbacks.Callback):
        """Keeps the weights after epoch 1, then turns a bias to NaN during epoch 2."""

        def on_epoch_end(self, epoch, logs=None):
            good[epoch] = [w.copy() for w in self.model.get_weights()]

        def on_train_batch_begin(self, batch, logs=None):
            if len(good) == 1 and batch == 1:
                bias = self.model.decoder_head.projection.bias
                bias.assign(tf.fill(bias.shape, np.nan))

    with pytest.raises(training.NonFiniteLossError,
                       match=r"loss was nan at step 2 of epoch 2.*after epoch 1"):
        training.fit_resumable(model, tf.data.Dataset.from_tensor_slices(digits), epochs=4,
                               batch_size=16, checkpoint_dir=tmp_path / "run", verbose=0,
                               callbacks=[Diverge()])
    assert training.epochs_done(tmp_path / "run") == 1
    for restored, kept in zip(model.get_weights(), good[0]):
        np.testing.assert_array_equal(restored, kept)
    assert tfvae.load(tfvae.export(model, tmp_path / "export")).version == 1
    bias = model.decoder_head.projection.bias
    bias.assign(tf.fill(bias.shape, np.nan))
    with pytest.raises(ValueError, match="non-finite"):
        tfvae.export(model, tmp_path / "export")


class StepLog(tf_keras.callbacks.Callback):
    """Records the step index Keras passes to on_train_batch_end: every step, or, when it says
    it does not need every step, each call's last step."""

    def __init__(self, needs_every_step=None):
        super().__init__()
        self.ends = []
        if needs_every_step is not None:
            self.needs_every_step = needs_every_step

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(batch)


def test_compile_default_runs_several_steps_per_call_in_long_fits_unless_a_callback_needs_every_step(
        digits, monkeypatch):
    monkeypatch.setattr(speed, "MIN_STEPS_FOR_SEVERAL_PER_CALL", 100)
    x = np.concatenate([digits] * 10)                 # 640 images: 40 steps of 16 an epoch
    spe = speed.STEPS_PER_CALL
    last_steps = list(range(spe - 1, 40, spe))        # each call's last step; 39 ends the epoch
    last_steps += [39] if last_steps[-1] != 39 else []
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
    # Without XLA: each switch between one and several steps per call compiles the step anew,
    # and XLA with several steps per call is in tests/test_bench.py's throughput arms.
    model.compile(jit_compile=False)

    def fit(epochs, *callbacks):
        """The step indices a per-call callback saw, and the optimizer steps taken."""
        calls, before = StepLog(needs_every_step=False), int(model.optimizer.iterations)
        model.fit(x, batch_size=16, epochs=epochs, verbose=0, callbacks=[*callbacks, calls])
        return calls.ends, int(model.optimizer.iterations) - before

    # A short fit (80 steps) first: one step per call, as Keras does by default...
    assert fit(2) == (list(range(40)) * 2, 80)
    # ... then a long one (120 steps): several per call, and every step still taken.
    assert fit(3) == (last_steps * 3, 120)
    assert int(model.steps_per_execution.numpy()) == 1   # evaluate, predict, train_on_batch after
    assert np.isfinite(model.train_on_batch(x[:16], return_dict=True)["loss"])
    # A callback with batch hooks of its own, or a per-step warm-up: one step per call.
    for callback in (StepLog(), tfvae.callbacks.KLWarmup(steps=10)):
        assert fit(3, callback) == (list(range(40)) * 3, 120), type(callback).__name__
    # Epoch-level callbacks keep the default.
    for callback in (tfvae.callbacks.KLWarmup(epochs=2), tf_keras.callbacks.EarlyStopping("loss"),
                     tf_keras.callbacks.TerminateOnNaN(),
                     tf_keras.callbacks.ModelCheckpoint(os.devnull, save_weights_only=True,
                                                        save_freq="epoch")):
        assert not tfvae.callbacks.needs_every_step(callback), type(callback).__name__
    assert tfvae.callbacks.needs_every_step(tf_keras.callbacks.ModelCheckpoint(os.devnull,
                                                                               save_freq=5))
    assert fit(3, tfvae.callbacks.KLWarmup(epochs=2)) == (last_steps * 3, 120)
    # A count given to compile() is kept as given, long fit or short.
    model.compile(steps_per_execution=1, jit_compile=False)
    assert fit(3) == (list(range(40)) * 3, 120)
    model.compile(steps_per_execution=8, jit_compile=False)
    assert fit(1) == ([7, 15, 23, 31, 39], 40)


def test_the_non_finite_guard_names_the_steps_of_the_call_that_met_the_nan(digits):
    x = np.concatenate([digits] * 10)
    model = tfvae.models.VAE(input_shape=DIGITS, latent_dim=2, hidden_units=(8,))
    model.compile(steps_per_execution=8)

    class Poison(tf_keras.callbacks.Callback):
        needs_every_step = False   # acts per call: at the start of epoch 2's third call

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 16:
                bias = self.model.decoder_head.projection.bias
                bias.assign(tf.fill(bias.shape, np.nan))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    with pytest.raises(training.NonFiniteLossError,
                       match=r"loss was nan at one of steps 17-24 of epoch 2"):
        model.fit(x, batch_size=16, epochs=3, verbose=0,
                  callbacks=[Poison(), training.NonFiniteGuard()])


def test_cli_training_that_diverges_says_so_and_exports_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "vae", "--take", "64", "--batch-size", "32", "--epochs", "2",
                  "--latent-dim", "2", "--hidden-units", "8", "--lr", "1e30",
                  "--export", str(tmp_path / "vae")])
    message = str(exit_info.value.code)
    assert "NonFiniteLossError" in message and "loss was nan" in message
    assert not (tmp_path / "vae").exists()


# ---- bad input at every public entry point (property-based) -------------------------------
JUNK = st.one_of(st.none(), st.booleans(), st.text(max_size=4), st.binary(max_size=2),
                 st.lists(st.integers(-2, 2), max_size=2), st.complex_numbers(max_magnitude=9),
                 st.dictionaries(st.text(max_size=1), st.integers(), max_size=1))
NOT_INT = st.one_of(st.floats(allow_nan=True, allow_infinity=True), JUNK)
BAD_POSITIVE_INT = st.one_of(st.integers(max_value=0), NOT_INT)
NOT_NUMBER = JUNK.filter(lambda v: not validation.is_real(v))
BAD_NON_NEGATIVE = st.one_of(st.floats(max_value=-1e-6), st.sampled_from(
    [math.nan, math.inf, -math.inf]), NOT_NUMBER)
BAD_SHAPE = st.one_of(
    st.just(()), st.lists(st.integers(-3, 0), min_size=1, max_size=3).map(tuple),
    st.tuples(st.integers(1, 8), st.floats()), st.tuples(st.text(max_size=2)),
    st.integers(), st.floats(), st.none(), st.text(min_size=1, max_size=3))
BAD_WIDTHS = st.one_of(
    st.lists(st.integers(-3, 0), min_size=1, max_size=2).map(tuple),
    st.tuples(st.integers(1, 8), st.sampled_from([2.5, "8", None, math.nan])),
    st.integers(), st.none(), st.floats())
BAD_CHOICE = st.one_of(st.text(max_size=6).filter(
    lambda s: s not in ("bernoulli", "gaussian", "discretized_logistic", "mlp", "conv",
                        "masking", "salt_and_pepper", "resnet")),
    st.integers(), st.lists(st.text(), max_size=1))


def _unknown_activation(value):
    try:
        tf_keras.activations.get(value)
        return False
    except (ValueError, TypeError):
        return True


BAD_ACTIVATION = st.one_of(st.text(min_size=1, max_size=6).filter(_unknown_activation),
                           st.integers(), st.floats(), st.lists(st.integers(), max_size=1))
BAD_SCALE = st.one_of(st.floats(max_value=0.0), st.sampled_from([math.nan, math.inf]),
                      NOT_NUMBER.filter(lambda v: v is not None))
BAD_PROBABILITY = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0),
                            st.just(math.nan), NOT_NUMBER)
BAD_ARGUMENTS = {
    "input_shape": BAD_SHAPE, "latent_dim": BAD_POSITIVE_INT, "latent_dims": BAD_WIDTHS,
    "hidden_units": BAD_WIDTHS, "flow_hidden_units": BAD_WIDTHS, "likelihood": BAD_CHOICE,
    "network": BAD_CHOICE, "corruption": BAD_CHOICE, "activation": BAD_ACTIVATION,
    "code_activation": BAD_ACTIVATION, "likelihood_scale": BAD_SCALE,
    "beta": BAD_NON_NEGATIVE, "free_bits": BAD_NON_NEGATIVE, "iwae_samples": BAD_POSITIVE_INT,
    "max_density_components": BAD_POSITIVE_INT, "context_dim": BAD_POSITIVE_INT,
    "flow_steps": st.one_of(st.integers(max_value=-1), NOT_INT),
    "l1_weight": BAD_NON_NEGATIVE, "sparsity_weight": BAD_NON_NEGATIVE,
    "contractive_weight": BAD_NON_NEGATIVE, "rho": BAD_PROBABILITY,
    "noise_level": st.one_of(st.floats(max_value=-1e-6), st.just(math.nan), NOT_NUMBER),
    "batch_norm": st.one_of(st.integers(), st.text(max_size=2), st.none()),
    "encoder": st.one_of(st.integers(), st.text(min_size=1, max_size=3),
                         st.lists(st.integers(), min_size=1, max_size=1), st.just(math.nan)),
    "decoder": st.one_of(st.integers(), st.text(min_size=1, max_size=3),
                         st.lists(st.integers(), min_size=1, max_size=1), st.just(math.nan)),
}
# Every registered family, from its own small example configuration.
VALID = {name: tfvae.models.get_class(name).example_config for name in tfvae.models.names()}


@settings(max_examples=220, **PROPERTY)
@given(data=st.data())
def test_model_constructors_name_bad_arguments(data):
    name = data.draw(st.sampled_from(sorted(VALID)), label="model")
    accepted, _ = validation.constructor_defaults(tfvae.models.get_class(name),
                                                  LatentVariableModel)
    argument = data.draw(st.sampled_from(sorted(set(accepted) & set(BAD_ARGUMENTS))),
                         label="argument")
    value = data.draw(BAD_ARGUMENTS[argument], label="value")
    # hidden_units=None means "the network's default widths" where that is the default.
    assume(not (value is None and accepted[argument] is None))
    with pytest.raises((ValueError, TypeError)) as error:
        tfvae.models.get(name, **{"input_shape": DIGITS, **VALID[name], argument: value})
    message = str(error.value)
    assert argument in message or (argument.endswith("activation") and "activation" in message)


BAD_LOAD = {
    "name": st.one_of(st.just(""), JUNK.filter(lambda v: not isinstance(v, str))),
    "split": st.one_of(st.just(""), st.just("validation"), JUNK.filter(lambda v: v != "")),
    "batch_size": BAD_POSITIVE_INT.filter(lambda v: v is not None),
    "take": BAD_POSITIVE_INT.filter(lambda v: v is not None),
    "seed": st.one_of(st.integers(max_value=-1), NOT_INT),
    "binarize": st.one_of(st.text(max_size=4), st.integers(), st.lists(st.none(), max_size=1)),
    "shuffle": JUNK.filter(lambda v: v is not None and not isinstance(v, bool)),
    "with_labels": JUNK.filter(lambda v: not isinstance(v, bool)),
    "download": JUNK.filter(lambda v: not isinstance(v, bool)),
    "data_dir": st.one_of(st.integers(), st.floats(), st.lists(st.text(), max_size=1)),
}


@settings(max_examples=120, **PROPERTY)
@given(data=st.data())
def test_data_load_names_bad_arguments(data):
    argument = data.draw(st.sampled_from(sorted(BAD_LOAD)), label="argument")
    value = data.draw(BAD_LOAD[argument], label="value")
    with pytest.raises(ValueError) as error:
        tfvae.data.load(**{"name": "digits", argument: value})
    assert argument in str(error.value)


def _bad_examples():
    good = np.random.default_rng(0).random((4, *DIGITS)).astype(np.float32)

    def poisoned(args):
        index, value = args
        x = good.copy()
        x.flat[index] = value
        return x

    return st.one_of(
        st.sampled_from([None, good[0], good.reshape(4, 64), good[:, :4], good[:0], good * 255,
                         good - 1, good.astype(str), good.astype(np.complex64),
                         np.array([None, good[0]], dtype=object)[1:], [[1, 2], [3]]]),
        st.tuples(st.integers(0, good.size - 1), st.sampled_from([np.nan, np.inf, -np.inf])
                  ).map(poisoned),
        st.lists(st.integers(1, 9), min_size=1, max_size=5).filter(
            lambda shape: tuple(shape[1:]) != DIGITS).map(lambda shape: np.zeros(shape)),
        st.sampled_from(["unbatched", "wrong shape", "strings"]).map(lambda kind: {
            "unbatched": lambda: tf.data.Dataset.from_tensor_slices(good),
            "wrong shape": lambda: tf.data.Dataset.from_tensor_slices(good[:, :4]).batch(2),
            "strings": lambda: tf.data.Dataset.from_tensors(["a"]),
        }[kind]()))


@settings(max_examples=100, **PROPERTY)
@given(bad=_bad_examples(), method=st.sampled_from(["fit", "evaluate"]))
def test_fit_and_evaluate_reject_bad_examples_before_training(small_vae, bad, method):
    if small_vae.optimizer is None:
        small_vae.compile()
    with pytest.raises(ValueError) as error:
        getattr(small_vae, method)(bad, verbose=0)
    assert f"{method}() takes examples of shape [batch, 8, 8, 1]" in str(error.value)


@pytest.fixture(scope="module")
def exported(small_vae, tmp_path_factory):
    return tfvae.export(small_vae, tmp_path_factory.mktemp("exports") / "vae")


@settings(max_examples=80, **PROPERTY)
@given(data=st.data())
def test_export_names_bad_arguments_and_writes_nothing(small_vae, tmp_path_factory, data):
    root = tmp_path_factory.mktemp("bad_exports", numbered=True)
    arguments = {"model": small_vae, "model_dir": root / "vae"}
    argument, strategy = data.draw(st.sampled_from([
        ("model", st.one_of(JUNK, st.just(tf.Module()), st.just(tf_keras.Sequential()))),
        ("model_dir", st.one_of(st.just(""), st.integers(), st.none(), st.floats(),
                                st.lists(st.text(), max_size=1), st.binary(max_size=3))),
        ("version", BAD_POSITIVE_INT.filter(lambda v: v is not None)),
        ("metrics", st.dictionaries(st.text(max_size=3), st.just(object()), min_size=1)),
        ("data", st.sets(st.integers(), min_size=1, max_size=2)),
        ("card", st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers()))),
    ]), label="argument")
    arguments[argument] = data.draw(strategy, label="value")
    with pytest.raises(ValueError) as error:
        tfvae.export(**arguments)
    assert argument in str(error.value) or (argument == "model" and "tfvae model" in str(
        error.value)) or (argument in ("metrics", "data") and "JSON" in str(error.value))
    assert list(root.iterdir()) == []


def _bad_signature_inputs():
    x = np.random.default_rng(0).random((3, *DIGITS)).astype(np.float32)
    return st.one_of(
        st.tuples(st.sampled_from(["encode", "reconstruct", "score"]), st.sampled_from([
            x[0], x.reshape(3, 64), x[:, :4], x.astype(str), x.astype(bool), None, "x",
            np.full_like(x, np.nan), x.astype(np.float64) * 1e300, [[1, 2], [3]],
            x.astype(np.complex64)])),
        st.tuples(st.just("decode"), st.sampled_from([
            np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.full((2, 2), np.inf),
            np.zeros((2, 2), str)])),
        st.tuples(st.just("sample"), st.one_of(
            st.sampled_from([np.array([0.5]), np.array([[1, 2]]), np.array([2 ** 63], np.uint64),
                             np.array(["1"]), np.array([True])]),
            st.floats(allow_nan=True, allow_infinity=True), st.integers(max_value=0),
            st.text(max_size=2))),
        st.tuples(st.just("load-path"), st.one_of(st.integers(), st.none(), st.just(""),
                                                  st.lists(st.text(), max_size=1))),
        st.tuples(st.just("load-version"), BAD_POSITIVE_INT.filter(lambda v: v is not None)))


@settings(max_examples=120, **PROPERTY)
@given(case=_bad_signature_inputs())
def test_load_and_the_loaded_signatures_reject_bad_inputs(exported, case):
    target, value = case
    if target == "load-path":
        with pytest.raises(ValueError, match="path_or_name"):
            tfvae.load(value)
        return
    if target == "load-version":
        with pytest.raises(ValueError, match="version"):
            tfvae.load(exported.parent, version=value)
        return
    served = _served(exported)
    with pytest.raises((ValueError, TypeError)) as error:
        served.sample(value) if target == "sample" else served.run(target, value)
    assert target in str(error.value)


_SERVED = {}


def _served(path):
    if path not in _SERVED:
        _SERVED[path] = tfvae.load(path)
    return _SERVED[path]


NUMBER_FLAGS = {"--epochs": "int", "--batch-size": "int", "--take": "int", "--latent-dim": "int",
                "--seed": "seed", "--lr": "float", "--clip-norm": "float", "--beta": "beta",
                "--hidden-units": "widths"}
CHOICE_FLAGS = ["--strategy", "--mixed-precision", "--network", "--likelihood", "--binarize"]


def _bad_flag_values():
    letters = st.text(alphabet="abcxyzinf.-", min_size=1, max_size=5)
    bad = {
        "int": st.one_of(st.integers(max_value=0).map(str), st.floats().map(str), letters),
        "seed": st.one_of(st.integers(max_value=-1).map(str), st.floats(0.5, 9.5).map(str),
                          letters),
        "float": st.one_of(st.floats(max_value=0.0).map(str), st.sampled_from(["nan", "inf"]),
                           letters.filter(lambda s: not _is_positive_number(s))),
        "beta": st.one_of(st.floats(max_value=-1e-3).map(str), st.just("nan"),
                          letters.filter(lambda s: not _is_positive_number(s))),
        "widths": st.one_of(st.just("8,0"), st.just("8,,4"), st.just("-1"), letters),
    }
    numbers = st.sampled_from(sorted(NUMBER_FLAGS)).flatmap(
        lambda flag: bad[NUMBER_FLAGS[flag]].map(lambda value: (flag, value)))
    choices = st.tuples(st.sampled_from(CHOICE_FLAGS), st.text(alphabet="xyz_", min_size=1,
                                                               max_size=5))
    sets = st.tuples(st.just("--set"), st.sampled_from(
        ["latent_dim=x", "latent_dim=0", "beta=-1", "beta=None", "hidden_units=3", "bogus=1",
         "likelihood=poisson", "latent_dim"]))
    return st.one_of(numbers, choices, sets)


def _is_positive_number(text):
    try:
        return 0 < float(text) < math.inf
    except ValueError:
        return False


@settings(max_examples=120, **PROPERTY)
@given(flag_value=_bad_flag_values())
def test_cli_flags_with_bad_values_fail_with_one_clear_line(flag_value, capsys):
    flag, value = flag_value
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "vae", "--epochs", "1", f"{flag}={value}"])
    message = f"{exit_info.value.code} {capsys.readouterr().err}"
    assert exit_info.value.code not in (0, None)
    names = [value.partition("=")[0]] if flag == "--set" else [flag, flag[2:].replace("-", "_")]
    assert any(name in message for name in names) and "Traceback" not in message


# ---- exports: interrupted, corrupt, called from threads ----------------------------------
def _snapshot(root):
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size) for p in root.rglob("*")}


def test_an_export_failing_at_any_step_leaves_the_folder_as_it_was(small_vae, tmp_path,
                                                                   monkeypatch):
    import tfvae.warmup

    tfvae.export(small_vae, tmp_path / "vae")
    before = _snapshot(tmp_path)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt  # not even an Exception: the staging folder still goes

    real_save = tf.saved_model.save

    def save_then_fail(*args, **kwargs):
        real_save(*args, **kwargs)
        raise OSError("disk full")

    steps = [(exporting, "ExportModule", fail), (tf.saved_model, "save", fail),
             (tf.saved_model, "save", save_then_fail), (tfvae.warmup, "write_warmup_requests",
                                                        fail), (exporting, "_sync", fail),
             (os, "rename", fail)]
    for owner, attribute, failure in steps:
        with monkeypatch.context() as patch:
            patch.setattr(owner, attribute, failure)
            with pytest.raises((KeyboardInterrupt, OSError)):
                tfvae.export(small_vae, tmp_path / "vae")
        assert _snapshot(tmp_path) == before, attribute
    assert tfvae.export(small_vae, tmp_path / "vae").name == "2"


def test_an_export_killed_at_random_times_never_leaves_a_partial_version(small_vae, tmp_path):
    rng = random.Random(7)
    model_dirs = [tmp_path / "a" / "vae", tmp_path / "b" / "vae"]
    processes = [helper("export-loop", str(model_dir)) for model_dir in model_dirs]
    for process in processes:  # two at once: each killed at its own random moment
        first = process.stdout.readline().split()  # "<version> <seconds>"
        assert first, process.stderr.read()[-3000:]
        time.sleep(rng.uniform(0.0, 1.2 * float(first[1])))
        process.send_signal(signal.SIGKILL)
    for process, model_dir in zip(processes, model_dirs):
        process.communicate(timeout=60)
        numbered = exporting.versions(model_dir)
        for version in numbered:  # every published version is complete
            folder = model_dir / str(version)
            for part in ("saved_model.pb", "variables/variables.index",
                         "assets/tfvae_card.json", "assets.extra/tf_serving_warmup_requests"):
                assert (folder / part).is_file(), f"{folder}/{part}"
        assert tfvae.load(model_dir).version == numbered[-1]
        # The next export removes what the killed one left in its staging folder.
        assert int(tfvae.export(small_vae, model_dir).name) == numbered[-1] + 1
        assert {p.name for p in model_dir.iterdir()} == {str(v) for v in
                                                         exporting.versions(model_dir)}


@pytest.mark.parametrize("damage", ["truncated variables", "no variables index",
                                    "damaged card"])
def test_a_corrupt_version_is_reported_not_served(small_vae, tmp_path, damage):
    tfvae.export(small_vae, tmp_path / "vae")
    broken = tfvae.export(small_vae, tmp_path / "vae")
    if damage == "truncated variables":
        data = next((broken / "variables").glob("variables.data-*"))
        data.write_bytes(data.read_bytes()[:16])
    elif damage == "no variables index":
        (broken / "variables" / "variables.index").unlink()
    else:
        (broken / "assets" / "tfvae_card.json").write_text("{ not json")
    with pytest.raises(InvalidExportError, match=str(broken)):
        tfvae.load(tmp_path / "vae")  # the latest is damaged: an error, not version 1 instead
    assert tfvae.load(tmp_path / "vae", version=1).version == 1


def test_a_loaded_model_gives_the_same_results_from_eight_threads(exported):
    served = tfvae.load(exported)
    rng = np.random.default_rng(0)
    inputs = [(rng.random((5, *DIGITS)).astype(np.float32),
               rng.normal(size=(5, 2)).astype(np.float32), np.arange(i, i + 5)) for i in range(8)]

    def run_all(case):
        x, z, seeds = case
        encoded = served.encode(x)
        return {"mean": encoded["mean"], "stddev": encoded["stddev"],
                "decode": served.decode(z)["x"], "sample": served.sample(seeds)["x"],
                "reconstruct": served.reconstruct(x)["x"], "kl": served.score(x)["kl"]}

    serial = [run_all(case) for case in inputs]
    start = threading.Barrier(8)

    def threaded(i):
        start.wait()  # all eight call at once
        return [run_all(inputs[i]) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(threaded, range(8)))
    for i, repeats in enumerate(results):
        for result in repeats:
            for key, value in result.items():
                np.testing.assert_allclose(value, serial[i][key], rtol=1e-6, atol=1e-6,
                                           err_msg=key)


# ---- the background subprocesses (distribution, resume after a kill) ----------------------
# Last, so that the subprocesses `background` started ran while every test above did.
def test_a_killed_training_resumes_to_the_same_weights(background):
    folder, jobs = background
    code, _, err = finish(jobs["killed"])
    assert code == -signal.SIGKILL, err[-3000:]
    assert training.epochs_done(folder / "killed") == 1
    code, out, err = finish(helper("train", *train_command(folder, "killed")))
    assert code == 0, err[-3000:]
    assert "1 of 2 epochs done" in err
    assert json.loads(out.strip().splitlines()[-1])["resumed_after_epochs"] == 1
    code, out, err = finish(jobs["whole"])
    assert code == 0, err[-3000:]

    whole = tf_keras.models.load_model(folder / "whole.keras").get_weights()
    resumed = tf_keras.models.load_model(folder / "killed.keras").get_weights()
    # The sampling noise, data order and binarization of epoch 2 were replayed exactly: any of
    # them drawn afresh would move the weights by far more.
    for a, b in zip(whole, resumed):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert training.epochs_done(folder / "killed") == 2


def test_two_workers_train_together_over_loopback(background, digits):
    folder, jobs = background
    for process in jobs["workers"]:
        code, _, err = finish(process)
        assert code == 0, err[-3000:]
    w0, w1 = (np.load(folder / f"w{i}.npz") for i in range(2))
    assert int(w0["replicas"]) == int(w1["replicas"]) == 2
    assert float(w0["moved"]) > 0.1
    # The same training in one process, on whole batches (robustness_helper.worker).
    tf_keras.utils.set_random_seed(0)
    alone = tfvae.models.get("ae", input_shape=DIGITS, latent_dim=3, hidden_units=(16,))
    alone.compile(optimizer=tf_keras.optimizers.SGD(0.1), jit_compile=False)
    alone.fit(tf.data.Dataset.from_tensor_slices(digits).batch(16), epochs=2, verbose=0)
    for i, weight in enumerate(alone.trainable_variables):
        # Each worker saw half of every global batch, yet both hold the same weights, the ones
        # one process gets from the whole batches.
        np.testing.assert_array_equal(w0[f"w{i}"], w1[f"w{i}"])
        np.testing.assert_allclose(w0[f"w{i}"], weight.numpy(), atol=1e-5)


def test_two_replicas_match_one_device_and_every_family_trains_mirrored(background):
    folder, jobs = background
    code, _, err = finish(jobs["mirrored"])
    assert code == 0, err[-3000:]
    result = json.loads((folder / "mirrored.json").read_text())
    assert result["replicas"] == 2
    # A deterministic autoencoder with SGD on the same global batches (the last one, of 3
    # examples, split 2 / 1): two replicas land where one device does...
    assert result["moved"] > 0.1
    assert result["two_vs_one"] < 1e-5
    # ... while the mistakes the loss scaling guards against land far off: gradients summed over
    # replicas without the division (= twice the learning rate), or each replica's mean divided
    # by the number of replicas, wrong for an uneven split.
    assert result["doubled_vs_one"] > 1000 * max(result["two_vs_one"], 1e-7)
    assert result["per_replica_mean_vs_one"] > 1000 * max(result["two_vs_one"], 1e-7)
    assert set(result["families"]) == set(tfvae.models.names())
    for name, losses in result["families"].items():
        assert all(math.isfinite(loss) for loss in losses), name
