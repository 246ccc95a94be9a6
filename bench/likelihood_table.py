"""The README's likelihood table from the JSON lines of bench/likelihood.py runs.

Every model is compared with both one-layer VAEs trained on the same data, the plain one and the
one with batch norm: the difference in test NLL is taken image by image over the same test
images (the runs must share them), so its standard error is that of the paired differences,
far smaller than either model's own.

    python bench/likelihood_table.py bench/results/likelihood.jsonl
    python bench/likelihood_table.py bench/results/likelihood.jsonl \
        --against bench/results/likelihood_vae_40_epochs.jsonl   # each run vs another baseline
"""
import argparse
import json

import numpy as np

NAMES = {"vae": "VAE, 1 layer", "iwae": "IWAE, 1 layer", "hvae": "VAE, 2 layers (HVAE)",
         "lvae": "Ladder VAE, 5 layers", "iaf": "VAE + IAF posterior"}


def label(run):
    name = NAMES[run["model"]]
    if run["model"] == "iwae":
        name = name.replace("IWAE", f"IWAE k={run.get('config', {}).get('iwae_samples', '?')}")
    return name + ", batch norm" if run.get("batch_norm") and run["model"] != "lvae" else name


BASELINES = (("vae", False), ("vae", True))


def paired_difference(run, baseline, data):
    """'mean ± stderr' of the run's NLL minus the baseline's, image by image (< 0: better)."""
    log_px, base = np.asarray(run["test_log_px"]), np.asarray(baseline["test_log_px"])
    # Older lines have no fingerprint of their test images; their count is checked at least.
    images = run.get("test_images_sha1"), baseline.get("test_images_sha1")
    if len(base) != len(log_px) or (None not in images and images[0] != images[1]):
        raise ValueError(f"{data}: {label(run)} and {label(baseline)} were tested on different "
                         f"images")
    gain = log_px - base              # > 0: this model explains the image better
    return f"{-gain.mean():+.2f} ± {gain.std(ddof=1) / np.sqrt(len(gain)):.2f}"


def rows(runs):
    """Markdown rows, one per (data, model, batch norm) - the last run of each - with each
    model's paired difference from the plain one-layer VAE and from the one with batch norm."""
    by_data = {}
    for run in runs:
        key = (run["model"], bool(run.get("batch_norm")))
        by_data.setdefault(run["data"], {})[key] = run
    out = []
    for data, models in sorted(by_data.items()):
        for key in sorted(models, key=lambda k: (list(NAMES).index(k[0]), k[1])):
            run = models[key]
            differences = ["—" if base not in models or base == key
                           else paired_difference(run, models[base], data)
                           for base in BASELINES]
            published = run.get("published_nll")
            if published is not None and run["model"] == "iwae":
                published = f"{published} (k=50)"   # the one IWAE figure in REFERENCES.md
            out.append(
                f"| {data} | {label(run)} | {run['epochs_run']} | "
                f"{run['train_seconds'] / 60:.1f} | {run['test_nll']:.2f} ± "
                f"{run['test_nll_stderr']:.2f} | {' | '.join(differences)} | "
                f"{run['test_neg_elbo']:.2f} | "
                f"{'/'.join(str(u) for u in run['active_units'])} | "
                f"{'—' if published is None else published} |")
    return out


def read_runs(path):
    with open(path) as lines:
        return [json.loads(line) for line in lines if line.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a .jsonl file of bench/likelihood.py lines")
    parser.add_argument("--against", metavar="RUN.jsonl",
                        help="instead of the table, each run's paired difference from this run "
                             "(one line) on the same data")
    args = parser.parse_args()
    runs = read_runs(args.results)
    if args.against:
        (baseline,) = read_runs(args.against)
        for run in runs:
            if run["data"] == baseline["data"]:
                print(f"{run['data']} | {label(run)}, {run['epochs_run']} epochs - "
                      f"{label(baseline)}, {baseline['epochs_run']} epochs: "
                      f"{paired_difference(run, baseline, run['data'])} nats")
        return
    print("| MNIST | model | epochs | training min | test NLL (k=5000) | vs VAE, paired | "
          "vs VAE + batch norm, paired | -ELBO | active units | published NLL |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows(runs)))


if __name__ == "__main__":
    main()
