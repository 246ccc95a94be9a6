"""Encoder and decoder bodies, and the heads tfvae puts on them.

A body is any tf_keras layer or model (Sequential, functional, or a registered subclass):
- an encoder body maps x [batch, *input_shape] to features [batch, F], any F;
- a decoder body maps a code z [batch, latent_dim] to features: [batch, H, W, K] with (H, W)
  the images' own, any K, or [batch, F].
tfvae adds the heads: a Dense layer from the encoder's features to a posterior's parameters
(or an autoencoder's code), and `LikelihoodProjection` from the decoder's features to a
likelihood's parameters (a 1x1 convolution on feature maps, a Dense layer on vectors), so a body
knows nothing of probability and never counts a distribution's parameters.

Built-in bodies, chosen with `network=`:
- "mlp": Dense layers of `hidden_units` widths, any input shape;
- "conv": a stride-2 3x3 convolution per entry of `hidden_units` (its filters), for images
  whose sides divide by 2 ** len(hidden_units);
- "resnet": a stride-2 convolution and a residual block (He et al. 2016) per entry, for RGB
  images such as CIFAR-10's 32x32 or CelebA's 64x64;
and `mlp(...)` builds the MLPs between the stochastic layers of the hierarchical VAEs.
"""
import numpy as np
import tensorflow as tf
import tf_keras

from tfvae import validation

#: the built-in bodies, and the widths (or filters) each uses when hidden_units is not given
DEFAULT_HIDDEN_UNITS = {"mlp": (512, 256), "conv": (32, 64), "resnet": (32, 64, 128)}
NETWORKS = tuple(DEFAULT_HIDDEN_UNITS)


@tf_keras.saving.register_keras_serializable(package="tfvae")
def leaky_rectify(x):
    """Lasagne's leaky rectifier, max(x, 0.01 x): the units of Sønderby et al.'s (2016) Ladder
    VAE as their reference implementation ran it (Keras' "leaky_relu" has slope 0.2)."""
    return tf.nn.leaky_relu(x, alpha=0.01)


#: activations tfvae names besides Keras' own
ACTIVATIONS = {"leaky_rectify": leaky_rectify}


def activation_function(name):
    """What Keras takes for the activation `name`: tfvae's own (ACTIVATIONS) or Keras' name."""
    return ACTIVATIONS.get(name, name) if isinstance(name, str) else name


def check_network_args(network, input_shape, hidden_units):
    """The widths for `network` on `input_shape` (its default when hidden_units is None), or a
    ValueError naming the argument that does not fit."""
    if network not in NETWORKS:
        raise ValueError(f"network={network!r} is not one of {list(NETWORKS)}")
    if hidden_units is None:
        hidden_units = DEFAULT_HIDDEN_UNITS[network]
    hidden_units = validation.check_widths("hidden_units", hidden_units)
    if network != "mlp":
        if len(input_shape) != 3:
            raise ValueError(f"network={network!r} needs input_shape (height, width, channels), "
                             f"got input_shape={tuple(input_shape)!r}")
        if not hidden_units:
            raise ValueError(f"network={network!r} needs at least one entry in hidden_units "
                             f"(filters)")
        factor = 2 ** len(hidden_units)
        if input_shape[0] % factor or input_shape[1] % factor:
            raise ValueError(
                f"network={network!r} halves the image {len(hidden_units)} times, so "
                f"input_shape's height and width must divide by {factor}; got "
                f"input_shape={tuple(input_shape)!r} with hidden_units={hidden_units!r}")
    return hidden_units


def encoder_body(network, input_shape, hidden_units, activation="relu", name="encoder"):
    """A built-in encoder body: x [batch, *input_shape] -> features [batch, F]."""
    layer_activation = activation_function(activation)
    stack = [tf_keras.layers.InputLayer(input_shape=tuple(input_shape))]
    if network == "mlp":
        stack.append(tf_keras.layers.Flatten())
        stack += [tf_keras.layers.Dense(u, activation=layer_activation) for u in hidden_units]
        return tf_keras.Sequential(stack, name=name)
    for filters in hidden_units:
        stack.append(tf_keras.layers.Conv2D(filters, 3, strides=2, padding="same",
                                            activation=layer_activation))
        if network == "resnet":
            stack.append(ResidualBlock(filters, activation))
    stack.append(tf_keras.layers.Flatten())
    return tf_keras.Sequential(stack, name=name)


def decoder_body(network, latent_dim, output_shape, hidden_units, activation="relu",
                 name="decoder"):
    """A built-in decoder body, mirroring the encoder: z [batch, latent_dim] -> [batch, F] for
    the MLP, [batch, H, W, filters] feature maps for the convolutional bodies."""
    layer_activation = activation_function(activation)
    stack = [tf_keras.layers.InputLayer(input_shape=(latent_dim,))]
    if network == "mlp":
        stack += [tf_keras.layers.Dense(u, activation=layer_activation)
                  for u in hidden_units[::-1]]
        return tf_keras.Sequential(stack, name=name)
    height, width, _ = output_shape
    factor = 2 ** len(hidden_units)
    filters = list(hidden_units)[::-1]
    stack += [tf_keras.layers.Dense(height // factor * width // factor * filters[0],
                                    activation=layer_activation),
              tf_keras.layers.Reshape((height // factor, width // factor, filters[0]))]
    channels = filters[0]
    for f in filters:
        if network == "resnet":  # the encoder's order reversed: residual block, then resample
            stack.append(ResidualBlock(channels, activation))
        stack.append(tf_keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same",
                                                     activation=layer_activation))
        channels = f
    return tf_keras.Sequential(stack, name=name)


def mlp(hidden_units, output_size=None, activation="relu", batch_norm=False, input_shape=None,
        name=None):
    """Flatten, then Dense (+ BatchNormalization) + activation per width, then Dense(output_size)
    unless it is None: the networks between a hierarchy's stochastic layers. Built on first call
    unless `input_shape` (of one example) is given."""
    layer_activation = activation_function(activation)
    stack = [] if input_shape is None else [tf_keras.layers.InputLayer(
        input_shape=tuple(input_shape))]
    stack.append(tf_keras.layers.Flatten())
    for width in hidden_units:
        if batch_norm:
            stack += [tf_keras.layers.Dense(width), tf_keras.layers.BatchNormalization(),
                      tf_keras.layers.Activation(layer_activation)]
        else:
            stack.append(tf_keras.layers.Dense(width, activation=layer_activation))
    if output_size is not None:
        stack.append(tf_keras.layers.Dense(output_size))
    return tf_keras.Sequential(stack, name=name)


@tf_keras.saving.register_keras_serializable(package="tfvae")
class ResidualBlock(tf_keras.layers.Layer):
    """x + conv(act(conv(act(x)))), two 3x3 convolutions keeping the shape: the pre-activation
    residual block of He et al. (2016), "Identity mappings in deep residual networks"."""

    def __init__(self, filters, activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.activation = int(filters), activation
        self._activation = tf_keras.activations.get(activation_function(activation))
        self.first = tf_keras.layers.Conv2D(self.filters, 3, padding="same")
        self.second = tf_keras.layers.Conv2D(self.filters, 3, padding="same")

    def call(self, x):
        return x + self.second(self._activation(self.first(self._activation(x))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "activation": self.activation}


@tf_keras.saving.register_keras_serializable(package="tfvae")
class LikelihoodProjection(tf_keras.layers.Layer):
    """A decoder body's features -> a likelihood's flat parameters [batch, k * prod(event_shape)]
    (k = params_per_element), in the layout the heads split on: k consecutive images.

    On feature maps [batch, H, W, K] it is a 1x1 convolution to k values per pixel and channel,
    so each pixel's parameters come from its own position; on vectors [batch, F], a Dense layer.
    """

    def __init__(self, event_shape, params_per_element, **kwargs):
        super().__init__(**kwargs)
        self.event_shape = tuple(int(d) for d in event_shape)
        self.params_per_element = int(params_per_element)
        self.projection = None

    def build(self, input_shape):
        k = self.params_per_element
        if len(input_shape) == 4:
            self.projection = tf_keras.layers.Conv2D(k * self.event_shape[-1], 1, name="conv")
        else:
            self.projection = tf_keras.layers.Dense(k * int(np.prod(self.event_shape)),
                                                    name="dense")
        super().build(input_shape)

    def call(self, features):
        params = self.projection(features)
        if features.shape.rank == 4:
            height, width, channels = self.event_shape
            params = tf.reshape(params, [-1, height, width, self.params_per_element, channels])
            params = tf.reshape(tf.transpose(params, [0, 3, 1, 2, 4]), [tf.shape(params)[0], -1])
        return params

    def get_config(self):
        return {**super().get_config(), "event_shape": self.event_shape,
                "params_per_element": self.params_per_element}


# ---- users' bodies ----------------------------------------------------------------------------
def check_body(role, body):
    """`body` if it is a tf_keras layer or model, else an error saying what to pass."""
    if isinstance(body, tf_keras.layers.Layer):
        return body
    module = type(body).__module__
    if module.split(".")[0] == "keras":
        raise validation.WrongTypeError(
            f"{role}= is a Keras 3 {type(body).__name__}; tfvae's models are tf_keras (Keras 2) "
            f"models, as TensorFlow Probability's layers need: build the body with "
            f"`import tf_keras` (tf_keras.Sequential, tf_keras.layers...)")
    raise validation.WrongTypeError(f"{role}= must be a tf_keras layer or model (Sequential, "
                                    f"functional, or a registered subclass), not "
                                    f"{type(body).__name__}")


def _shape(values):
    return "[" + ", ".join("batch" if i == 0 else str(d) for i, d in enumerate(values)) + "]"


def _run_body(role, body, inputs, what):
    try:
        out = body(inputs, training=False)
    except Exception as error:  # the body's own error, named
        raise ValueError(f"{role}= could not be called on {what} {_shape(inputs.shape)}: "
                         f"{type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
    if not tf.is_tensor(out):
        raise ValueError(f"{role}= must return one tensor; it returned {type(out).__name__}")
    return out


def check_encoder_output(body, input_shape, role="encoder"):
    """Run the encoder body on a batch of zeros; its features' size F, or a ValueError naming
    `role`, the shape it produced and the one expected."""
    out = _run_body(role, body, tf.zeros((2, *input_shape)), "x")
    if out.shape.rank != 2 or out.shape[0] != 2 or not out.dtype.is_floating:
        raise ValueError(f"{role}= must map x {_shape((None, *input_shape))} to features "
                         f"[batch, F]; it produced {_shape(out.shape)} of {out.dtype.name}"
                         + (" (end it with a Flatten layer)" if out.shape.rank > 2 else ""))
    return int(out.shape[1])


def check_decoder_output(body, latent_dim, output_shape, role="decoder"):
    """Run the decoder body on a batch of zero codes, or raise a ValueError naming `role`, the
    shape it produced and the shapes that fit."""
    out = _run_body(role, body, tf.zeros((2, latent_dim)), "z")
    images = len(output_shape) == 3
    fits = out.shape[0] == 2 and out.dtype.is_floating and (
        out.shape.rank == 2 or (images and out.shape.rank == 4
                                and tuple(out.shape[1:3]) == tuple(output_shape[:2])))
    if not fits:
        expected = (f"[batch, {output_shape[0]}, {output_shape[1]}, K] or [batch, F]" if images
                    else "[batch, F]")
        raise ValueError(f"{role}= must map z [batch, {latent_dim}] to {expected}; it produced "
                         f"{_shape(out.shape)} of {out.dtype.name}")


def is_conv_free(*bodies):
    """Whether none of the bodies holds a convolution (XLA's CPU convolutions were measured to
    be slower than TensorFlow's own; see LatentVariableModel.xla_pays)."""
    return not any("Conv" in type(layer).__name__
                   for body in bodies for layer in [body, *body.submodules])
