"""Keras callbacks for training tfvae models with `model.fit`, and which callbacks need to see
every training step (`needs_every_step`)."""
import numbers

import tf_keras


def needs_every_step(callback):
    """Whether `callback`'s batch hooks must run after every step rather than once per call of
    the compiled function (which runs `steps_per_execution` steps).

    Keras calls `on_train_batch_begin/end` once per call, with the index of the call's last
    step, so a callback that counts, times or changes something per step (a per-step schedule, a
    save every N steps, a test that poisons batch 2) would act at the wrong step. Keras' own
    callbacks say whether they use their batch hooks (`_implements_train_batch_hooks`: e.g.
    ModelCheckpoint only with an integer `save_freq`); a callback may also say, with a
    `needs_every_step` attribute, that its hooks are right at any count (`NonFiniteGuard`) or
    wrong. The progress bar only redraws less often, and TerminateOnNaN, like NonFiniteGuard,
    reads the epoch's running-mean loss, which stays NaN once a step's loss was.

    Args:
        callback: a tf_keras callback; its train and test (fit's validation) hooks count.
    """
    if isinstance(callback, (tf_keras.callbacks.ProgbarLogger, tf_keras.callbacks.TerminateOnNaN)):
        return False
    declared = getattr(callback, "needs_every_step", None)
    if declared is not None:
        return bool(declared)
    return callback._implements_train_batch_hooks() or callback._implements_test_batch_hooks()


class KLWarmup(tf_keras.callbacks.Callback):
    """KL warm-up (Sønderby et al. 2016): the model's `kl_weight` rises linearly from 0 to 1
    over the first `epochs` epochs or `steps` optimizer steps, then stays at 1. When `fit`
    ends the weight is 1 whatever the ramp reached, so that `evaluate` and an export report the
    full objective.

    The weight is a variable of the model that the compiled train step reads, so setting it
    here between steps changes the loss without retracing. In steps mode the count is the
    optimizer's iterations, so a resumed `fit` continues the ramp where it was.

    Args:
        epochs: length of the ramp in epochs (the weight is epoch / epochs during epoch
            `epoch`, counting from 0).
        steps: length of the ramp in optimizer steps; give exactly one of the two.

    Example:
        model.fit(ds, epochs=300, callbacks=[tfvae.callbacks.KLWarmup(epochs=200)])
    """

    def __init__(self, epochs=None, steps=None):
        super().__init__()
        if (epochs is None) == (steps is None):
            raise ValueError(f"give exactly one of epochs={epochs!r} and steps={steps!r}")
        length = epochs if steps is None else steps
        if isinstance(length, bool) or int(length) != length or int(length) < 1:
            raise ValueError(f"the warm-up length must be an integer >= 1, got {length!r}")
        self.epochs = None if epochs is None else int(epochs)
        self.steps = None if steps is None else int(steps)

    def _implements_train_batch_hooks(self):
        # In steps mode the ramp moves every step; in epochs mode only at epoch starts.
        return self.steps is not None

    def _set(self, value):
        self.model.kl_weight.assign(min(1.0, float(value)))

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "kl_weight"):
            raise ValueError(f"KLWarmup needs a model with a kl_weight variable (a VAE), "
                             f"not {type(self.model).__name__}")
        if self.steps is not None:
            self._set(int(self.model.optimizer.iterations) / self.steps)

    def on_epoch_begin(self, epoch, logs=None):
        if self.epochs is not None:
            self._set(epoch / self.epochs)

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps is not None:
            self._set(int(self.model.optimizer.iterations) / self.steps)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["kl_weight"] = float(self.model.kl_weight.numpy())

    def on_train_end(self, logs=None):
        self._set(1.0)


class ImageSummaries(tf_keras.callbacks.Callback):
    """Writes image grids to TensorBoard during `fit`: decoded samples (the same seeds every
    time, so the images show how training changes them) and `examples` above their
    reconstructions, as `samples` and `reconstructions` image summaries at each epoch step.

    Args:
        logdir: the TensorBoard folder (e.g. the one given to `tf_keras.callbacks.TensorBoard`);
            the images go to `logdir/images`.
        examples: a few inputs [n, *input_shape] to reconstruct (8 to 16 is plenty).
        every_n_epochs: write after epochs 0, n, 2n, ... and after the last one.
        num_samples: how many samples (seeds 0..num_samples-1).

    Example:
        model.fit(train, epochs=20, callbacks=[
            tfvae.callbacks.ImageSummaries("logs/vae", x_test[:16], every_n_epochs=2)])
        # tensorboard --logdir logs/vae   -> the IMAGES tab
    """

    def __init__(self, logdir, examples, every_n_epochs=1, num_samples=16):
        super().__init__()
        import numpy as np

        if isinstance(every_n_epochs, bool) or int(every_n_epochs) != every_n_epochs \
                or every_n_epochs < 1:
            raise ValueError(f"every_n_epochs={every_n_epochs!r} must be an integer >= 1")
        self.logdir, self.every_n_epochs = str(logdir), int(every_n_epochs)
        self.examples = np.asarray(examples, np.float32)
        self.num_samples = int(num_samples)
        self._writer = None
        self._last_written = None

    def on_train_begin(self, logs=None):
        import os

        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.logdir, "images"))

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every_n_epochs == 0:
            self.write(epoch)

    def on_train_end(self, logs=None):
        epochs = self.params.get("epochs") if self.params else None
        if epochs is not None and self._last_written != epochs - 1:
            self.write(epochs - 1)
        if self._writer is not None:
            self._writer.flush()

    def write(self, step):
        """Write the two grids now, at summary step `step`."""
        import numpy as np
        import tensorflow as tf

        from tfvae.plotting import image_grid

        self.on_train_begin()
        samples = self.model.sample_outputs(tf.range(self.num_samples, dtype=tf.int64))["x"]
        rebuilt = self.model.reconstruct_outputs(tf.constant(self.examples))["x"].numpy()
        n = len(self.examples)
        # Inputs on one row, their reconstructions on the next (in rows of up to 8).
        columns = min(8, n)
        pairs = []
        for i in range(0, n, columns):
            row_inputs = self.examples[i:i + columns]
            row_rebuilt = rebuilt[i:i + columns]
            pad = columns - len(row_inputs)
            if pad:
                blank = np.ones((pad, *self.examples.shape[1:]), np.float32)
                row_inputs = np.concatenate([row_inputs, blank])
                row_rebuilt = np.concatenate([row_rebuilt, blank])
            pairs += [row_inputs, row_rebuilt]
        with self._writer.as_default():
            _write_image("samples", image_grid(samples.numpy()), step)
            _write_image("reconstructions", image_grid(np.concatenate(pairs), columns), step)
        self._last_written = step


def _write_image(tag, grid, step):
    """One [h, w, c] image in [0, 1] as a TensorBoard image summary.

    What `tf.summary.image` writes, without needing the tensorboard package (TensorFlow no
    longer installs it): a [width, height, png] string tensor tagged for the images plugin."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    png = tf.image.encode_png(tf.image.convert_image_dtype(grid, tf.uint8, saturate=True))
    height, width = int(grid.shape[0]), int(grid.shape[1])
    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="images"))
    return tf.summary.write(tag, tf.stack([tf.as_string(width), tf.as_string(height), png]),
                            step=step, metadata=metadata.SerializeToString())


class FitLatentDensity(tf_keras.callbacks.Callback):
    """Fits an autoencoder's code density (`fit_latent_density`) at the end of `fit`, so that
    `sample` and `generate` work straight away.

    Example:
        model.fit(train, epochs=10, callbacks=[FitLatentDensity(train, kind="gmm", components=10)])
    """

    KINDS = ("gaussian", "gmm")

    def __init__(self, data, kind="gaussian", components=None):
        super().__init__()
        # Checked now, not after the training it would follow.
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r} is not one of {list(self.KINDS)}")
        if components is not None and (isinstance(components, bool)
                                       or not isinstance(components, numbers.Integral)
                                       or components < 1):
            raise ValueError(f"components={components!r} must be a positive integer or None")
        self.data, self.kind, self.components = data, kind, components

    def on_train_begin(self, logs=None):
        if not hasattr(self.model, "fit_latent_density"):
            raise TypeError(f"FitLatentDensity needs an autoencoder (tfvae.models.AE and its "
                            f"kin), not {type(self.model).__name__}")
        most = self.model.max_density_components
        if self.components is not None and self.components > most:
            raise ValueError(f"components={self.components!r} is more than the model's "
                             f"max_density_components={most}")

    def on_train_end(self, logs=None):
        self.model.fit_latent_density(self.data, kind=self.kind, components=self.components)
