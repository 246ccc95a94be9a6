"""Random numbers that every runtime computes alike, from seeds the caller passes.

TensorFlow's random ops are not LiteRT builtins and ONNX Runtime refuses them, so the exports'
draws (a posterior sample, a prior sample, the importance samples of a log-likelihood) come
from this small counter-based generator instead: integer arithmetic modulo two primes below
2^31 (int64 multiply, add and floor-mod, which TensorFlow, LiteRT and ONNX compute exactly),
then float arithmetic. The same seeds give the same numbers in a SavedModel, a LiteRT model and
an ONNX model, up to the float rounding of log and cos.

Each int64 seed owns a stream of numbers, a pure function of (seed, index): a row's numbers do
not change with the other rows of a batch, nor with how a long stream is cut into chunks.

    eps = normal(seeds, 8)              # [batch, 8]: numbers 0..7 of each seed's stream
    eps = normal(seeds, 8, start=8)     # numbers 8..15: the next draw, independent
    u = uniform(seeds, 1, start=COMPONENT_CHOICE)

How: counter j of seed s starts at x = (s A + j B + C) mod p and goes through rounds of
x <- (x^2 + c) mod p, in two prime fields; u is the fractional part of x_1 / p_1 + x_2 / p_2, so
no polynomial over either field describes it; a normal number n is Box-Muller's
sqrt(-2 log u_2n) cos(2 pi u_2n+1). Statistical checks: tests/test_randomness.py.
"""
import math

import tensorflow as tf

#: the two prime moduli: below 2^31, so that a product of two residues fits in an int64
PRIMES = (2147483647, 2147483629)
#: per field: the multipliers of the seed and the counter, the offset, and each round's constant
_MIXING = ((1103515245, 12345, 7919, (1013904223, 22695477, 69069, 362437, 891336453)),
           (134775813, 69069, 104729, (1664525, 214013, 2531011, 40692, 812433253)))
#: the first uniform counter a model may use for a discrete choice (a mixture's component),
#: far above the counters of any normal numbers it draws (two per number); counters stay below
#: 2^45, so that counter * 69069 + seed term fits in an int64
COMPONENT_CHOICE = 1 << 40
#: uniforms are multiples of 2^-24 offset by half a step: in (0, 1), and exact in float32
_RESOLUTION = float(1 << 24)


def uniform(seeds, size, start=0):
    """[batch, size] float32 numbers in (0, 1): counters start..start + size - 1 of each int64
    seed [batch]; `start` may be a scalar tensor."""
    seeds = tf.convert_to_tensor(seeds, tf.int64)
    return _uniform_at(seeds, tf.range(size, dtype=tf.int64) + tf.cast(start, tf.int64))


def normal(seeds, size, start=0):
    """[batch, size] float32 standard normal numbers start..start + size - 1 of each int64 seed
    [batch]'s stream; `start` may be a scalar tensor."""
    seeds = tf.convert_to_tensor(seeds, tf.int64)
    number = tf.range(size, dtype=tf.int64) + tf.cast(start, tf.int64)
    radius = tf.sqrt(-2.0 * tf.math.log(_uniform_at(seeds, 2 * number)))
    return radius * tf.cos(2.0 * math.pi * _uniform_at(seeds, 2 * number + 1))


def _uniform_at(seeds, counters):
    total = 0.0
    for prime, (seed_factor, counter_factor, offset, constants) in zip(PRIMES, _MIXING):
        x = tf.math.floormod(tf.math.floormod(seeds, prime)[:, None] * seed_factor
                             + counters[None, :] * counter_factor + offset, prime)
        for constant in constants:
            x = tf.math.floormod(x * x + constant, prime)
        total += tf.cast(x, tf.float32) / float(prime)
    fraction = tf.math.floormod(total, 1.0)
    return (tf.floor(fraction * _RESOLUTION) + 0.5) / _RESOLUTION
