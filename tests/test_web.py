"""The page of web/ (issue #30) in headless Chromium: it runs the shipped vae_mnist's ONNX
export with onnxruntime-web, and what it computes and shows is what the SavedModel gives for
the same inputs, draws included (they are functions of the int64 seeds).

Tolerance: float32 rounding of sums in another order and of WebAssembly's log and cos; measured
at most 2.9e-6 absolute (q's mean and z for an image of noise), which rtol = atol = 2.4e-6
covers; rtol = atol = 1e-5, as the battery's ONNX test, leaves four times that.

Needs Chromium (`apt-get install chromium`) and the page's runtime (`npm ci --prefix web`),
which .ci/run installs; without them the test is skipped, saying which is missing.
"""
import importlib.util
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import tfvae

WEB = Path(__file__).resolve().parent.parent / "web"


def _script(name):
    """web/<name>.py as a module; by path, since a `build` module may be installed too."""
    spec = importlib.util.spec_from_file_location(f"web_{name}", WEB / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build, headless = _script("build"), _script("headless")

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
#: int64 seeds, both ends of the range included: the generator's modular arithmetic runs in
#: the browser's 64-bit integers as in TensorFlow's
SEEDS = [0, 1, 2, 15, -7, 2**62 + 1, 2**63 - 1, -2**63]

pytestmark = [
    pytest.mark.skipif(headless.find_chromium() is None,
                       reason="no Chromium on PATH: apt-get install chromium (.ci/run does)"),
    pytest.mark.skipif(headless.missing_runtime() is not None,
                       reason=str(headless.missing_runtime())),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """web/ as `python web/build.py` leaves it, the export in a folder of the test's own."""
    root = tmp_path_factory.mktemp("site")
    for entry in WEB.iterdir():
        if entry.name != "models":
            (root / entry.name).symlink_to(entry)
    build.build("vae_mnist", root / "models")
    return root


@pytest.fixture(scope="module")
def page(site):
    with headless.serve(site) as url, headless.Chromium() as browser:
        browser.open(url)  # the page's default model: models/vae_mnist/1
        browser.wait_for("window.tfvaeReady")
        yield browser


@pytest.fixture(scope="module")
def saved():
    return tfvae.load("vae_mnist")


def call(page, function, *arguments):
    """tfvaeTest.<function>(...arguments) in the page: numpy arrays in, numpy arrays out.
    JSON carries float32 exactly (as doubles) and int64 as strings, which BigInt takes whole."""
    def plain(value):
        if isinstance(value, np.ndarray) and value.dtype == np.int64:
            return [str(v) for v in value.tolist()]
        return value.tolist() if isinstance(value, np.ndarray) else value
    result = page.evaluate(f"tfvaeTest.{function}("
                           f"{', '.join(json.dumps(plain(a)) for a in arguments)})")
    return {key: np.array(value, np.float32) for key, value in result.items()}


def assert_close(got, expected, what):
    assert set(got) == set(expected), what
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, **TOLERANCE, err_msg=f"{what}/{key}")


def shown(page, selector):
    """The grey levels (0-255) of the canvases `selector` matches, [count, height, width]."""
    return np.array(page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(c => {{"
        f"  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        f"  return Array.from({{length: c.height}}, (_, i) => Array.from({{length: c.width}},"
        f"    (_, j) => data[4 * (i * c.width + j)])); }})"))


def test_sample_decode_encode_reconstruct_give_the_saved_models_outputs(page, saved):
    seeds = np.array(SEEDS, np.int64)
    assert_close(call(page, "sample", seeds), saved.sample(seeds), "sample")
    z = np.random.default_rng(0).normal(size=(4, 50)).astype(np.float32)
    assert_close(call(page, "decode", z), saved.decode(z), "decode")
    # Digits (the model's own samples) and noise.
    x = np.concatenate([saved.sample(np.arange(3))["x"],
                        np.random.default_rng(1).uniform(size=(1, 28, 28, 1)).astype(np.float32)])
    rows = np.array([5, 6, -7, 2**63 - 1], np.int64)
    assert_close(call(page, "encode", x, rows), saved.encode(x, seed=rows), "encode")
    # reconstruct's output is x_out in ONNX (x is its input): the same numbers.
    assert_close(call(page, "reconstruct", x), {"x_out": saved.reconstruct(x)["x"]}, "reconstruct")


def test_the_samples_panel_shows_the_saved_models_samples(page, saved):
    # The panel's first seed is 0: seeds 0..15, as saved_models/vae_mnist/samples.png begins.
    expected = np.round(255 * saved.sample(np.arange(16))["x"][..., 0])
    np.testing.assert_allclose(shown(page, "#samples canvas"), expected, atol=1)
    page.evaluate("document.querySelector('#samples button[name=next]').click()")
    page.wait_for("tfvaeTest.idle()")
    expected = np.round(255 * saved.sample(np.arange(16, 32))["x"][..., 0])
    np.testing.assert_allclose(shown(page, "#samples canvas"), expected, atol=1)


def test_the_walk_decodes_a_straight_line_between_two_samples(page, saved):
    walk = call(page, "walk", 3, 12, 10)
    ends = saved.sample(np.array([3, 12]))["z"]
    t = np.linspace(0, 1, 10)[:, None]
    np.testing.assert_allclose(walk["z"], (1 - t) * ends[0] + t * ends[1], **TOLERANCE)
    assert_close({"x": walk["x"]}, saved.decode(walk["z"]), "walk")
    np.testing.assert_allclose(shown(page, "#walk canvas"),
                               np.round(255 * walk["x"][..., 0]), atol=1)


def test_a_digit_drawn_with_the_mouse_is_reconstructed(page, saved, tmp_path):
    page.evaluate("document.querySelector('#draw button[name=clear]').click()")
    headless.draw(page, headless.SEVEN)
    page.wait_for("tfvaeTest.idle()")
    drawn = np.array(page.evaluate("tfvaeTest.drawing()"), np.float32)
    assert drawn.shape == (1, 28, 28, 1)
    # The 7's bar is ink, the rows above it are not.
    assert drawn[0, 7, 8:21, 0].min() == 1 and drawn[0, :5].max() == 0
    reconstruction = saved.reconstruct(drawn)["x"]
    np.testing.assert_allclose(shown(page, "#draw canvas.digit")[0],
                               np.round(255 * reconstruction[0, ..., 0]), atol=1)
    page.screenshot(tmp_path / "page.png")
    png = (tmp_path / "page.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == headless.VIEWPORT
