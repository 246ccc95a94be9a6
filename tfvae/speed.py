"""The speed policy of `compile()`'s defaults: how many training steps one call of Keras' compiled
function runs in a `fit`. Measured with bench/throughput.py (bench/results/throughput_*.json);
where XLA pays is each model's `xla_pays()`.

    steps_per_call(x=dataset, batch_size=None, epochs=50, steps_per_epoch=None, callbacks=[])
    # 16: a long fit whose callbacks act per epoch
"""
import tensorflow as tf
import tf_keras

from tfvae.callbacks import needs_every_step

#: steps per call of the compiled function in a fit long enough: each call costs Python and
#: dispatch work that a small model's step feels; 64 measured at most 5% faster
#: (bench/results/throughput_*.json), and longer calls report progress less often
STEPS_PER_CALL = 16
#: ... but tracing the looping function costs more than the one-step function (a second or
#: so on a 2-core machine), about what 1,000 steps of a small model gain back
MIN_STEPS_FOR_SEVERAL_PER_CALL = 1000


def steps_per_call(x, batch_size, epochs, steps_per_epoch, callbacks):
    """STEPS_PER_CALL for a fit of at least MIN_STEPS_FOR_SEVERAL_PER_CALL steps (or of an
    unknown length), 1 for a shorter one or when a callback must see every step
    (`tfvae.callbacks.needs_every_step`); the arguments are `fit`'s, epochs counting from
    initial_epoch."""
    if isinstance(callbacks, tf_keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    if any(needs_every_step(c) for c in callbacks or ()):
        return 1
    per_epoch = _steps_per_epoch(x, batch_size, steps_per_epoch)
    if per_epoch is None or per_epoch * epochs >= MIN_STEPS_FOR_SEVERAL_PER_CALL:
        return STEPS_PER_CALL
    return 1


def _steps_per_epoch(x, batch_size, steps_per_epoch):
    """The steps of one epoch of `fit(x, batch_size=..., steps_per_epoch=...)`, or None when
    they are not known up front (a dataset of unknown or infinite length, a generator)."""
    if steps_per_epoch:
        return int(steps_per_epoch)
    if isinstance(x, tf.data.Dataset):
        count = int(x.cardinality())
        return count if count >= 0 else None
    length = getattr(x, "shape", None)
    if length is None or not length:
        return None
    return -(-int(length[0]) // int(batch_size or 32))  # Keras' default batch for arrays
