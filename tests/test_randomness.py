"""The exports' portable random numbers (tfvae.randomness): a pure function of (seed, index),
and standard normal and uniform numbers by the usual tests."""
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from tfvae import randomness


def test_a_seeds_numbers_depend_on_the_seed_and_their_index_alone():
    seeds = tf.constant([5, 0, 2 ** 62, -3, 5], tf.int64)
    draws = randomness.normal(seeds, 12).numpy()
    np.testing.assert_array_equal(draws[0], draws[4])             # same seed, same numbers
    np.testing.assert_array_equal(draws[0], randomness.normal(seeds[:1], 12)[0])  # any batch
    # A stream cut into chunks is the same stream.
    parts = [randomness.normal(seeds, 5), randomness.normal(seeds, 7, start=tf.constant(5))]
    np.testing.assert_array_equal(draws, np.concatenate(parts, axis=1))
    assert len({tuple(row) for row in draws[:4]}) == 4
    assert np.all(np.isfinite(draws))
    u = randomness.uniform(seeds, 1000).numpy()
    assert 0 < u.min() and u.max() < 1


def test_the_numbers_pass_for_normal_and_uniform_and_are_uncorrelated():
    seeds = tf.range(4000, dtype=tf.int64)          # consecutive seeds, the hardest case
    z = randomness.normal(seeds, 50).numpy().astype(np.float64)
    flat = z.ravel()                               # 200,000 numbers
    assert abs(flat.mean()) < 0.01 and abs(flat.var() - 1) < 0.015
    assert abs(stats.kurtosis(flat)) < 0.05 and abs(stats.skew(flat)) < 0.03
    assert stats.kstest(flat, "norm").pvalue > 1e-3
    # Neighbouring numbers of a seed, and the same number of neighbouring seeds.
    for a, b in ((z[:, :-1], z[:, 1:]), (z[:-1], z[1:]), (z[:-7], z[7:])):
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    u = randomness.uniform(seeds, 50, start=randomness.COMPONENT_CHOICE).numpy().ravel()
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # Pairs of uniforms fill the square evenly (no lattice of a linear generator shows).
    pairs = randomness.uniform(seeds, 2).numpy()
    counts, _, _ = np.histogram2d(pairs[:, 0], pairs[:, 1], bins=10)
    assert stats.chisquare(counts.ravel()).pvalue > 1e-3
