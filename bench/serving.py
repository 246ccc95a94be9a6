"""Serving latency and throughput of an exported model against the in-memory model, per signature.

The model is an untrained VAE 784-512-256-32 (Bernoulli likelihood): latency does not depend on
training. It is exported with tfvae.export, then every signature is timed at batch 1 and 256
through four paths, each call ending with its outputs as numpy arrays:
- savedmodel:  the export loaded with tf.saved_model.load, its signature function (tfvae.load);
- session:     the export loaded with TensorFlow's session-based loader (tag "serve") and run by
               the signature's tensor names, the path TF Serving's SavedModelBundle takes (without
               TF Serving's network and request parsing);
- tf_function: the in-memory model's `*_outputs` in a tf.function with the same input signature;
- keras_eager: the in-memory model called eagerly (`model(x)` for reconstruct, `*_outputs` else).
Each cell (signature and batch) makes `--calls` rounds of one call per path, each round in a
fresh random order, so that the machine's noise, and what a call leaves behind for the next (the
eager path's garbage), hit all paths alike. Per path the printed line holds p50 and p99 latency
over all of the cell's calls and throughput (examples/s); per signature and batch, the ratio of
the savedmodel and session paths' p50 and p99 to the tf_function path's (<= 1: the export is no
slower), each with a 90% interval from a block bootstrap over rounds. A p99 needs many calls to
hold still: of 200 it is about the third-slowest, and its ratios moved by a tenth from run to
run of this bench; at batch 256, 600 calls left the ratios between 0.89 and 1.23. The default
run takes about 21 minutes here.

    python bench/serving.py                       # 2000 calls a path at batch 1, 3000 at 256
    python bench/serving.py --calls 100 20        # a smoke run
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import logs, signatures  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402


BATCHES = (1, 256)
#: the importance samples of the log_likelihood calls timed here: one pass of the export's loop
K = 100


def inputs_for(signature, specs, batch, rng):
    """{input name: value} for a call of `signature` at `batch` rows."""
    values = {}
    for alias, spec in specs.items():
        shape = [batch, *spec.shape[1:]]
        if alias == "k":
            values[alias] = np.full(batch, K, np.int64)
        elif spec.dtype == tf.int64:
            values[alias] = np.arange(batch, dtype=np.int64)
        elif signature == "decode":
            values[alias] = rng.normal(size=shape).astype(np.float32)
        else:
            values[alias] = rng.uniform(size=shape).astype(np.float32)
    return values


def session_runner(export_dir):
    """{signature: (callable taking the input array, input alias)} over a TF1 session."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(export_dir))
    runners = {}
    for name, signature in meta_graph.signature_def.items():
        if name.startswith("__"):
            continue
        aliases = sorted(signature.inputs)
        fetches = [graph.get_tensor_by_name(o.name) for o in signature.outputs.values()]
        feeds = [graph.get_tensor_by_name(signature.inputs[a].name) for a in aliases]
        runners[name] = (session.make_callable(fetches, feed_list=feeds), aliases)
    return runners, session


def paths_for(signature, model, loaded, sessions, values):
    tensors = {alias: tf.constant(value) for alias, value in values.items()}
    specs = loaded.signatures[signature].structured_input_signature[1]
    order = signatures.input_names(signature)         # the model method's argument order
    saved = loaded.signatures[signature]
    method = getattr(model, signatures.get(signature).method)
    compiled = tf.function(method, input_signature=[specs[alias] for alias in order])
    eager = (lambda x: {"x": model(x)}) if signature == "reconstruct" else method
    arguments = [tensors[alias] for alias in order]
    run, aliases = sessions[signature]
    feeds = [values[alias] for alias in aliases]
    return {
        "savedmodel": lambda: {k: v.numpy() for k, v in saved(**tensors).items()},
        "session": lambda: run(*feeds),
        "tf_function": lambda: {k: v.numpy() for k, v in compiled(*arguments).items()},
        "keras_eager": lambda: {k: v.numpy() for k, v in eager(*arguments).items()},
    }


def timed(paths, calls, rng):
    """`calls` rounds of one call per path, each round in a fresh random order, so that a burst
    of load from elsewhere on the machine, and the after-effects of the call before (a rotating
    order would put the same path after keras_eager's slow, garbage-making call in most rounds),
    hit every path alike: {path: [seconds of its call in round i]}."""
    names = list(paths)
    latencies = {name: [] for name in names}
    for _ in range(calls):
        for name in rng.permutation(names):
            begin = time.perf_counter()
            paths[name]()
            latencies[name].append(time.perf_counter() - begin)
    return {name: np.asarray(values) for name, values in latencies.items()}


def figures(seconds, batch):
    """p50 and p99 latency (ms) and throughput (examples per second of the path's own time)."""
    return {"p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 4),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 4),
            "examples_per_s": round(batch * len(seconds) / float(seconds.sum()), 1)}


#: rounds per block of the bootstrap: load on the machine comes in bursts that span rounds, so
#: resampling single rounds as if independent would make the intervals too narrow.
BLOCK = 50


def ratio_with_interval(arm, base, q, rng, resamples=2000, block=BLOCK):
    """The q-th percentile of arm's latencies over base's, and a 90% interval from a circular
    block bootstrap: runs of `block` consecutive rounds resampled whole, the same rounds for both
    (a round holds one call of each path, so the pairs stay together)."""
    n = len(arm)
    starts = rng.integers(0, n, size=(resamples, -(-n // block)))
    rounds = ((starts[:, :, None] + np.arange(block)) % n).reshape(resamples, -1)[:, :n]
    resampled = np.percentile(arm[rounds], q, axis=1) / np.percentile(base[rounds], q, axis=1)
    low, high = np.percentile(resampled, [5, 95])
    return [round(float(np.percentile(arm, q) / np.percentile(base, q)), 3),
            round(float(low), 3), round(float(high), 3)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, nargs=2, default=(2000, 3000),
                        metavar=("AT_1", "AT_256"), help="calls per path at batch 1 and at 256")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per path first")
    args = parser.parse_args()
    began = time.perf_counter()

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("vae", input_shape=(28, 28, 1), latent_dim=32, hidden_units=(512, 256))
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = tfvae.export(model, Path(tmp) / "vae")
        loaded = tf.saved_model.load(str(export_dir))
        sessions, session = session_runner(export_dir)
        names = sorted(s for s in loaded.signatures if s != "serving_default")
        rng = np.random.default_rng(0)
        order_rng = np.random.default_rng(1)  # the order of the paths in each round
        bootstrap_rng = np.random.default_rng(2)
        results, ratios = {}, {}
        for signature in names:
            specs = loaded.signatures[signature].structured_input_signature[1]
            for batch, calls in zip(BATCHES, args.calls):
                values = inputs_for(signature, specs, batch, rng)
                paths = paths_for(signature, model, loaded, sessions, values)
                for call in paths.values():
                    for _ in range(args.warmup):
                        call()
                latencies = timed(paths, calls, order_rng)
                results.setdefault(signature, {})[str(batch)] = {
                    name: figures(seconds, batch) for name, seconds in latencies.items()}
                ratios.setdefault(signature, {})[str(batch)] = {
                    path: {f"p{q}": ratio_with_interval(latencies[path], latencies["tf_function"],
                                                        q, bootstrap_rng)
                           for q in (50, 99)}
                    for path in ("savedmodel", "session")}
        session.close()

    print(json.dumps({
        "bench": "serving", "model": "vae 784-512-256-32 bernoulli, untrained",
        "tensorflow": tf.__version__, "cpus": os.cpu_count(),
        "calls": dict(zip(map(str, BATCHES), args.calls)),
        # [ratio, 5th, 95th percentile of its bootstrap]
        "vs_tf_function": ratios, "results": results,
        "seconds": round(time.perf_counter() - began, 1),
    }))


if __name__ == "__main__":
    main()
