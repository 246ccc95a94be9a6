"""The README's likelihood table from the JSON lines of bench/likelihood.py runs.

Every model is compared with the one-layer VAE trained on the same data, with batch norm if the
model has it (the Ladder VAE always does): the difference in
test NLL is taken image by image over the same test images (the runs must share them), so its
standard error is that of the paired differences, far smaller than either model's own.

    python bench/likelihood_table.py bench/results/likelihood.jsonl
"""
import argparse
import json

import numpy as np

NAMES = {"vae": "VAE, 1 layer", "iwae": "IWAE, 1 layer", "hvae": "VAE, 2 layers (HVAE)",
         "lvae": "Ladder VAE, 5 layers", "iaf": "VAE + IAF posterior"}


def label(run):
    name = NAMES[run["model"]]
    return name + ", batch norm" if run.get("batch_norm") and run["model"] != "lvae" else name


def rows(runs):
    """Markdown rows, one per (data, model, batch norm) - the last run of each - with each
    model's paired difference from the one-layer VAE that has batch norm when it has."""
    by_data = {}
    for run in runs:
        key = (run["model"], bool(run.get("batch_norm")))
        by_data.setdefault(run["data"], {})[key] = run
    out = []
    for data, models in sorted(by_data.items()):
        for key in sorted(models, key=lambda k: (list(NAMES).index(k[0]), k[1])):
            run = models[key]
            log_px = np.asarray(run["test_log_px"])
            baseline = models.get(("vae", key[1]))
            difference = "—"
            if baseline is not None and key[0] != "vae":
                base = np.asarray(baseline["test_log_px"])
                if len(base) != len(log_px):
                    raise ValueError(f"{data}: {label(run)} and {label(baseline)} were tested "
                                     f"on different images")
                gain = log_px - base              # > 0: this model explains the image better
                difference = (f"{-gain.mean():+.2f} ± "
                              f"{gain.std(ddof=1) / np.sqrt(len(gain)):.2f}")
            published = run.get("published_nll")
            out.append(
                f"| {data} | {label(run)} | {run['epochs_run']} | "
                f"{run['train_seconds'] / 60:.1f} | {run['test_nll']:.2f} ± "
                f"{run['test_nll_stderr']:.2f} | {difference} | {run['test_neg_elbo']:.2f} | "
                f"{'/'.join(str(u) for u in run['active_units'])} | "
                f"{'—' if published is None else published} |")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a .jsonl file of bench/likelihood.py lines")
    args = parser.parse_args()
    with open(args.results) as lines:
        runs = [json.loads(line) for line in lines if line.strip()]
    print("| MNIST | model | epochs | training min | test NLL (k=5000) | vs VAE, paired | "
          "-ELBO | active units | published NLL |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows(runs)))


if __name__ == "__main__":
    main()
