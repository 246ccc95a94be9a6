"""Write the ONNX export that the page in web/ runs: a shipped model of the zoo, converted.

    python web/build.py                  # web/models/vae_mnist/1/: encode.onnx, ..., assets/
    python web/build.py --model vae_mnist --out site/models

The export is generated, never committed (.gitignore): it is version 1 of its model folder,
rewritten on every run so that it follows the shipped SavedModel. It needs the ONNX converter
(tf2onnx) beside TensorFlow; the page then needs neither.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

WEB = Path(__file__).resolve().parent
# Run as a script from anywhere: tfvae is the checkout's.
sys.path.insert(0, str(WEB.parent))


def build(model="vae_mnist", models_dir=WEB / "models"):
    """Export the shipped `model` as ONNX to `models_dir/<model>/1` (replaced) and return it."""
    from tfvae.exporting import convert

    folder = Path(models_dir) / model
    shutil.rmtree(folder / "1", ignore_errors=True)
    # The shipped card's data and test figures travel with the weights: the page shows them.
    return convert(model, folder, format="onnx", version=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vae_mnist", help="a shipped model (saved_models/)")
    parser.add_argument("--out", type=Path, default=WEB / "models", help="the models folder")
    args = parser.parse_args(argv)
    print(build(args.model, args.out))


if __name__ == "__main__":
    main()
