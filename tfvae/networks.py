"""Encoder and decoder bodies: deterministic networks that end in a flat vector of parameters.

A distribution head (tfvae.layers) turns that vector into a distribution; the bodies know
nothing of probability. `network="mlp"` works on any input shape, `network="conv"` on images
(height, width, channels) whose sides divide by 2 ** len(hidden_units).
"""
import numpy as np
import tf_keras

NETWORKS = ("mlp", "conv")


def check_network_args(network, input_shape, hidden_units):
    """Validate the arguments shared by every encoder/decoder pair; raise ValueError naming them."""
    if network not in NETWORKS:
        raise ValueError(f"network={network!r} is not one of {list(NETWORKS)}")
    if any(int(u) < 1 for u in hidden_units):
        raise ValueError(f"hidden_units={tuple(hidden_units)!r} must be positive integers")
    if network == "conv":
        if len(input_shape) != 3:
            raise ValueError(f"network='conv' needs input_shape (height, width, channels), "
                             f"got input_shape={tuple(input_shape)!r}")
        if not hidden_units:
            raise ValueError("network='conv' needs at least one entry in hidden_units (filters)")
        factor = 2 ** len(hidden_units)
        if input_shape[0] % factor or input_shape[1] % factor:
            raise ValueError(
                f"network='conv' halves the image {len(hidden_units)} times, so input_shape's "
                f"height and width must divide by {factor}; got input_shape={tuple(input_shape)!r} "
                f"with hidden_units={tuple(hidden_units)!r}")


def encoder_body(input_shape, hidden_units, output_size, network="mlp", activation="relu",
                 name="encoder"):
    """x [batch, *input_shape] -> [batch, output_size].

    MLP: Flatten, Dense(u) for u in hidden_units, Dense(output_size).
    Conv: a stride-2 3x3 Conv2D per entry of hidden_units (its filters), Flatten, Dense(output_size).
    """
    layers = [tf_keras.layers.InputLayer(input_shape=tuple(input_shape))]
    if network == "conv":
        layers += [tf_keras.layers.Conv2D(f, 3, strides=2, padding="same", activation=activation)
                   for f in hidden_units]
        layers.append(tf_keras.layers.Flatten())
    else:
        layers.append(tf_keras.layers.Flatten())
        layers += [tf_keras.layers.Dense(u, activation=activation) for u in hidden_units]
    layers.append(tf_keras.layers.Dense(output_size))
    return tf_keras.Sequential(layers, name=name)


def decoder_body(code_size, output_shape, hidden_units, params_per_element, network="mlp",
                 activation="relu", name="decoder"):
    """z [batch, code_size] -> flat parameters [batch, params_per_element * prod(output_shape)].

    The MLP mirrors the encoder (hidden_units reversed). The conv decoder mirrors it too:
    Dense to a small feature map, a stride-2 Conv2DTranspose per filter count, then a 3x3 Conv2D
    to params_per_element values per pixel and channel. Those are reordered so that the flat
    vector is k consecutive images, the layout the heads split on: the head reads each pixel's
    parameters from the same spatial position.
    """
    layers = [tf_keras.layers.InputLayer(input_shape=(code_size,))]
    size = int(np.prod(output_shape)) * params_per_element
    if network == "conv":
        height, width, channels = output_shape
        factor = 2 ** len(hidden_units)
        filters = list(hidden_units)[::-1]
        layers += [
            tf_keras.layers.Dense(height // factor * width // factor * filters[0],
                                  activation=activation),
            tf_keras.layers.Reshape((height // factor, width // factor, filters[0])),
        ]
        layers += [tf_keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same",
                                                   activation=activation) for f in filters]
        layers += [
            tf_keras.layers.Conv2D(params_per_element * channels, 3, padding="same"),
            tf_keras.layers.Reshape((height, width, params_per_element, channels)),
            tf_keras.layers.Permute((3, 1, 2, 4)),
            tf_keras.layers.Flatten(),
        ]
    else:
        layers += [tf_keras.layers.Dense(u, activation=activation) for u in hidden_units[::-1]]
        layers.append(tf_keras.layers.Dense(size))
    return tf_keras.Sequential(layers, name=name)
