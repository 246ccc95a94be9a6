"""Speed of the importance-sampled log-likelihood (Burda et al. 2015) against hand-written
TensorFlow, side by side on the same weights and images.

Arms, per model:
- "tfvae": `model.log_likelihood(images, num_samples=k)`, as a user calls it (all the images at
  once; the model batches and chunks them);
- "reference": the same estimate as one hand-written XLA-compiled `tf.function` per batch of 100
  images: the encoder once, then a `tf.while_loop` over chunks of samples with a running
  logsumexp. For the one-layer VAE it is plain matrix algebra on the model's kernels (no Keras,
  no TFP); for the chains (hvae, ladder_vae) the loop calls the model's own `log_weights`, since
  their per-sample math is the model's;
- "reference_nojit": the same hand-written function without XLA (what measured faster on CPU);
- "decoder_products" (the VAE only): the decoder's matrix products alone, with their biases and
  ReLUs, on as many samples: a floor under any estimate that decodes every sample.
The models are the papers' sizes (the IWAE paper's 784-200-200-50 VAE, its two-layer chain, and
the Ladder VAE's default), untrained: the cost does not depend on the weights. Runs alternate
between arms; the printed line holds per model the median seconds per 100 images of each arm,
the ratio reference / tfvae (>= 1: tfvae is at least as fast), the agreement of the estimates,
and the projected time of the full 10,000-image MNIST test set at k.

    python bench/likelihood_speed.py                          # vae and hvae, k = 5000, 3 runs
    python bench/likelihood_speed.py --models vae --images 500 --runs 5
    python bench/likelihood_speed.py --models vae --arms tfvae --images 10000 --runs 1

The last times the whole test set's worth of images once; `cpu_seconds` (the process's CPU time)
beside the wall time shows how much of the wall time a busy host took away.
"""
import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import logs  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402


ARMS = ("tfvae", "reference", "reference_nojit", "decoder_products")
MODELS = {"vae": dict(latent_dim=50, hidden_units=(200, 200)),
          "hvae": dict(latent_dims=(100, 50), hidden_units=((200, 200), (100, 100)),
                       batch_norm=False),
          "ladder_vae": dict(batch_norm=False)}   # as the recorded results were measured
REFERENCE_BATCH = 100


def vae_decoder_by_hand(model):
    """The MLP VAE's decoder in plain TF on its own variables: codes [n, d] -> logits [n, 784]."""
    decoder = [l for l in model.decoder.layers if isinstance(l, tf_keras.layers.Dense)]
    head = model.decoder_head.submodules[0] if model.decoder_head.submodules else None
    out_kernel, out_bias = ((head.kernel, head.bias) if head is not None else
                            (model.decoder_head.kernel, model.decoder_head.bias))

    def decoder_logits(h):
        for layer in decoder:
            h = tf.nn.relu(h @ layer.kernel + layer.bias)
        return h @ out_kernel + out_bias

    return decoder_logits


def vae_log_weights_by_hand(model):
    """log p(x, z) - log q(z|x) for the MLP VAE with a Bernoulli likelihood, in plain TF on the
    model's own variables: (x [b, 784]) -> a function of (n) giving [n, b]."""
    encoder = [l for l in model.encoder.layers if isinstance(l, tf_keras.layers.Dense)]
    decoder_logits = vae_decoder_by_hand(model)
    latent = model.latent_dim
    log_2pi = math.log(2 * math.pi)

    def encode(x):
        h = tf.reshape(x, [tf.shape(x)[0], -1])
        for layer in encoder:
            h = tf.nn.relu(h @ layer.kernel + layer.bias)
        params = h @ model.encoder_head.kernel + model.encoder_head.bias
        mu, raw = params[:, :latent], params[:, latent:]
        return mu, tf.math.softplus(raw) + model.posterior.min_scale

    def log_weights(x, mu, sigma, n):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        eps = tf.random.normal([n, tf.shape(x)[0], latent])
        z = mu + sigma * eps                                             # [n, b, d]
        log_q = tf.reduce_sum(-0.5 * eps ** 2 - tf.math.log(sigma) - 0.5 * log_2pi, -1)
        log_pz = tf.reduce_sum(-0.5 * z ** 2 - 0.5 * log_2pi, -1)
        logits = tf.reshape(decoder_logits(tf.reshape(z, [-1, latent])), [n, -1, flat.shape[-1]])
        log_px = tf.reduce_sum(flat * logits - tf.math.softplus(logits), -1)
        return log_px + log_pz - log_q

    return encode, log_weights


def decoder_products(model, k, chunk):
    """The VAE decoder's products on k codes per image, in a `tf.while_loop` over chunks."""
    decoder_logits = vae_decoder_by_hand(model)
    chunks = -(-k // chunk)

    @tf.function
    def decode_all(x):
        rows = chunk * tf.shape(x)[0]

        def body(i, total):
            z = tf.zeros([rows, model.latent_dim]) + tf.cast(i, tf.float32)
            return i + 1, total + tf.reduce_sum(decoder_logits(z))

        return tf.while_loop(lambda i, _: i < chunks, body, (tf.constant(0), tf.constant(0.0)))[1]

    def run(images):
        for i in range(0, len(images), REFERENCE_BATCH):
            decode_all(tf.constant(images[i:i + REFERENCE_BATCH])).numpy()
        return None   # no estimate: a time only
    return run


def reference_estimator(model, name, k, chunk, jit_compile):
    """A compiled per-batch estimate: encoder once, a while_loop over k / chunk chunks."""
    chunks = -(-k // chunk)
    if name == "vae":
        encode, by_hand = vae_log_weights_by_hand(model)
    else:
        encode, by_hand = None, None

    @tf.function(jit_compile=jit_compile)
    def estimate(x):
        if by_hand is not None:
            mu, sigma = encode(x)
            weights = lambda n: by_hand(x, mu, sigma, n)  # noqa: E731
        else:
            weights = lambda n: model.log_weights(x, n)  # noqa: E731

        def body(i, total):
            return i + 1, tf.reduce_logsumexp(
                tf.stack([total, tf.reduce_logsumexp(weights(chunk), 0)]), 0)

        _, total = tf.while_loop(lambda i, _: i < chunks, body,
                                 (tf.constant(0), tf.fill([tf.shape(x)[0]], -np.inf)))
        return total - math.log(chunks * chunk)

    def run(images):
        return np.concatenate([estimate(tf.constant(images[i:i + REFERENCE_BATCH])).numpy()
                               for i in range(0, len(images), REFERENCE_BATCH)])
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["vae", "hvae"])
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--reference-chunk", type=int, default=500,
                        help="samples per chunk in the references (a divisor of k)")
    args = parser.parse_args(argv)
    if args.k % args.reference_chunk:
        parser.error("--reference-chunk must divide --k")
    images = (np.random.default_rng(0).random((args.images, 28, 28, 1)) < 0.13).astype(np.float32)
    line = {"benchmark": "likelihood_speed", "k": args.k, "images": args.images,
            "runs": args.runs, "models": {}}
    for name in args.models:
        tf_keras.utils.set_random_seed(0)
        model = tfvae.models.get(name, input_shape=(28, 28, 1), **MODELS[name])
        model(images[:1])
        arms = {"tfvae": lambda batch, m=model: m.log_likelihood(batch, num_samples=args.k,
                                                                 verbose=0).numpy(),
                "reference": reference_estimator(model, name, args.k, args.reference_chunk, True),
                "reference_nojit": reference_estimator(model, name, args.k,
                                                       args.reference_chunk, False)}
        if name == "vae":
            arms["decoder_products"] = decoder_products(model, args.k, args.reference_chunk)
        arms = {arm: arms[arm] for arm in args.arms if arm in arms}
        for run in arms.values():  # trace and compile outside the timing
            run(images[:REFERENCE_BATCH])
        seconds = {arm: [] for arm in arms}
        cpu_seconds = {arm: [] for arm in arms}
        estimates = {}
        for _ in range(args.runs):
            for arm, run in arms.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                estimates[arm] = run(images)
                seconds[arm].append(time.perf_counter() - start)
                cpu_seconds[arm].append(time.process_time() - cpu_start)
        per_100 = {arm: round(statistics.median(s) * 100 / args.images, 3)
                   for arm, s in seconds.items()}
        result = {"seconds_per_100_images": per_100}
        for arm in ("reference", "reference_nojit", "decoder_products"):
            if arm in per_100 and "tfvae" in per_100:
                result[f"{arm}_over_tfvae"] = round(per_100[arm] / per_100["tfvae"], 3)
        result["mean_log_likelihood"] = {arm: round(float(v.mean()), 3)
                                         for arm, v in estimates.items() if v is not None}
        if "tfvae" in per_100:
            result["full_test_set_minutes"] = round(per_100["tfvae"] * 100 / 60, 1)
        result["all_seconds"] = {arm: [round(t, 2) for t in s] for arm, s in seconds.items()}
        result["cpu_seconds"] = {arm: [round(t, 2) for t in s] for arm, s in cpu_seconds.items()}
        line["models"][name] = result
    line["tensorflow"] = tf.__version__
    print(json.dumps(line))


if __name__ == "__main__":
    main()
