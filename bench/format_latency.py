"""Latency of every signature of an export in each format, LiteRT and ONNX against the SavedModel.

A shipped model (vae_mnist unless `--model` names another, or a path to an export) is rebuilt
with `tfvae.models.from_pretrained` and exported three times into a temporary folder with
`tfvae.export(model, ..., format=...)`: saved_model, litert and onnx, so all three come from
the same weights and the same export code. Each is loaded with `tfvae.load` (a LoadedModel run
by TensorFlow, a LiteRTModel, an ONNXModel: each runtime's defaults, threads included) and
timed on the user's path, `model.run(signature, inputs)`: the input checks, the runtime's call
and the outputs as numpy arrays. Every signature at batch 1 and 256; `x` uniform in [0, 1],
`z` standard normal, seeds 0..batch-1, and log_likelihood at k = `--k` (100: one pass of the
export's chunked loop; its cost grows about linearly with k).

Per cell (signature and batch), each runtime makes `--warmup` untimed calls, then rounds of one
call per runtime, each round in a fresh random order, so that bursts of load from elsewhere on
the machine hit every runtime alike: rounds go on until the cell has taken `--seconds`, at least
MIN_ROUNDS and at most `--rounds`. The printed line (also written to `--out`) holds per cell and
runtime the median latency and its quartiles (ms) and the median CPU time of a call (ms, all
the process's threads: above the latency, the runtime ran threads in parallel), and each
converted format's median over the SavedModel's (below 1: faster). Takes about 3 minutes here.

    python bench/format_latency.py                           # vae_mnist, k = 100
    python bench/format_latency.py --model hvae_mnist
    python bench/format_latency.py --seconds 0 --rounds 3    # a smoke run
"""
import argparse
import importlib.metadata
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Before TensorFlow: a command keeps TensorFlow's C++ start-up logs quiet (tfvae.logs).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfvae  # noqa: E402

from tfvae import loading, logs, signatures  # noqa: E402

logs.quiet_tensorflow_logs()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

FORMATS = ("saved_model", "litert", "onnx")
BATCHES = (1, 256)
K = 100
#: the fewest rounds of a cell, however long its calls take (log_likelihood at batch 256)
MIN_ROUNDS = 7
RESULTS = Path(__file__).resolve().parent / "results" / "format_latency.json"


def log(message):
    """Progress on stderr; stdout holds only the JSON line."""
    print(message, file=sys.stderr, flush=True)


def export_all(model, folder):
    """{format: the loaded export} of `model` exported in each format under `folder`, and
    {format: seconds its export took}."""
    loaded, seconds = {}, {}
    for format in FORMATS:
        began = time.perf_counter()
        path = tfvae.export(model, Path(folder) / format, format=format)
        seconds[format] = round(time.perf_counter() - began, 1)
        loaded[format] = tfvae.load(path)
        log(f"exported {format} in {seconds[format]} s")
    return loaded, seconds


def inputs_for(export, signature, batch, k, rng):
    """{input name: array} for a call of `signature` at `batch` rows."""
    values = {}
    for name, (shape, dtype) in export.signature_inputs(signature).items():
        shape = [batch, *shape[1:]]
        if name == "k":
            values[name] = np.full(shape, k, dtype)
        elif name == "seed":
            values[name] = np.arange(batch, dtype=dtype)
        elif name == "z":
            values[name] = rng.normal(size=shape).astype(dtype)
        else:
            values[name] = rng.uniform(size=shape).astype(dtype)
    return values


def timed(exports, signature, inputs, seconds, max_rounds, order_rng):
    """Rounds of one `run` per export in a fresh random order: {format: [wall seconds of its
    call in round i]}, {format: [CPU seconds]}; rounds until `seconds` have passed, at least
    MIN_ROUNDS (fewer if `max_rounds` is fewer) and at most `max_rounds`."""
    names = list(exports)
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    began = time.perf_counter()
    rounds = 0
    while rounds < max_rounds and (rounds < MIN_ROUNDS or time.perf_counter() - began < seconds):
        for name in order_rng.permutation(names):
            run = exports[name].run
            cpu_begin = time.process_time()
            begin = time.perf_counter()
            run(signature, inputs)
            wall[name].append(time.perf_counter() - begin)
            cpu[name].append(time.process_time() - cpu_begin)
        rounds += 1
    return ({name: np.asarray(values) for name, values in wall.items()},
            {name: np.asarray(values) for name, values in cpu.items()})


def figures(wall, cpu):
    """Median latency, its quartiles and the median CPU time of a call, in ms."""
    q1, median, q3 = np.percentile(wall, [25, 50, 75]) * 1000
    return {"median_ms": round(float(median), 4),
            "quartiles_ms": [round(float(q1), 4), round(float(q3), 4)],
            "cpu_ms": round(float(np.median(cpu)) * 1000, 4)}


def versions():
    found = {"tensorflow": tf.__version__}
    for package in ("ai-edge-litert", "onnxruntime", "tf2onnx"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vae_mnist",
                        help="a shipped model's name, or the path of an export")
    parser.add_argument("--k", type=int, default=K, help="log_likelihood's importance samples")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="time each cell's rounds take (at least %d rounds)" % MIN_ROUNDS)
    parser.add_argument("--rounds", type=int, default=2000, help="the most rounds of a cell")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per runtime first")
    parser.add_argument("--out", default=str(RESULTS), help="where the JSON line is written too")
    args = parser.parse_args(argv)
    began = time.perf_counter()

    source = loading.resolve(args.model)      # the version rebuilt: the latest
    model = tfvae.models.from_pretrained(source)
    with tempfile.TemporaryDirectory() as tmp:
        exports, export_seconds = export_all(model, tmp)
        reference = exports["saved_model"]
        rng, order_rng = np.random.default_rng(0), np.random.default_rng(1)
        results, ratios, rounds = {}, {}, {}
        for signature in signatures.SIGNATURES:
            for batch in BATCHES:
                inputs = inputs_for(reference, signature, batch, args.k, rng)
                for export in exports.values():
                    for _ in range(args.warmup):
                        export.run(signature, inputs)
                wall, cpu = timed(exports, signature, inputs, args.seconds, args.rounds,
                                  order_rng)
                cell = {name: figures(wall[name], cpu[name]) for name in exports}
                results.setdefault(signature, {})[str(batch)] = cell
                base = cell["saved_model"]["median_ms"]
                ratios.setdefault(signature, {})[str(batch)] = {
                    name: round(cell[name]["median_ms"] / base, 3) for name in FORMATS[1:]}
                rounds.setdefault(signature, {})[str(batch)] = len(wall["saved_model"])
                log(f"{signature} at batch {batch}, {len(wall['saved_model'])} rounds: "
                    + ", ".join(f"{name} {cell[name]['median_ms']:.3f} ms" for name in exports))

    card = reference.card
    line = json.dumps({
        "bench": "format_latency", "model": str(args.model),
        "version": int(source.name) if source.name.isdigit() else None,
        "family": card["model"], "config": card["config"], "k": args.k,
        **versions(), "cpus": os.cpu_count(), "rounds": rounds,
        "vs_saved_model": ratios, "results": results, "export_seconds": export_seconds,
        "seconds": round(time.perf_counter() - began, 1),
    })
    print(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
