"""tfvae.plotting from an in-memory model and from a loaded export, `tfvae plot`, and the
ImageSummaries callback's TensorBoard event file."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _pixels(path):
    """The PNG's pixels as an array: the file exists, decodes, and is not one flat colour."""
    import matplotlib.image

    assert Path(path).stat().st_size > 1000
    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, f"{path} is a blank image"
    return image


@pytest.fixture(scope="module")
def trained(digits):
    """A small VAE with a 2-D latent space trained a little on the digits, and its export."""
    import tf_keras

    import tfvae

    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(32,))
    # No XLA: compiling costs more than these few steps.
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), jit_compile=False)
    model.fit(digits, epochs=20, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    import tfvae

    path = tfvae.export(trained, tmp_path_factory.mktemp("export") / "vae_digits")
    return tfvae.load(path)


@pytest.fixture(scope="module")
def ae(digits):
    import tfvae

    model = tfvae.models.get("ae", input_shape=(8, 8, 1), latent_dim=4, hidden_units=(16,))
    model.compile(jit_compile=False)
    model.fit(digits, epochs=2, batch_size=32, verbose=0)
    model.fit_latent_density(digits)
    return model


def test_model_view_agrees_for_model_and_export(trained, exported, digits):
    from tfvae.plotting import ModelView

    memory, loaded = ModelView(trained), ModelView(exported)
    assert memory.input_shape == loaded.input_shape == (8, 8, 1)
    assert memory.latent_shape == loaded.latent_shape == (2,)
    np.testing.assert_allclose(memory.code(digits), loaded.code(digits), atol=1e-5)
    np.testing.assert_allclose(memory.sample([3, 4]), loaded.sample([3, 4]), atol=1e-5)
    with pytest.raises(TypeError, match="LoadedModel"):
        ModelView(object())


@pytest.mark.parametrize("source", ["model", "export"])
def test_every_plot_writes_a_png(source, trained, exported, digits, tmp_path):
    from tfvae import plotting

    model = trained if source == "model" else exported
    labels = np.arange(len(digits)) % 10
    figures = {
        "samples": plotting.plot_samples(model, num=16, path=tmp_path / "samples.png"),
        "reconstructions": plotting.plot_reconstructions(model, digits[:12],
                                                         path=tmp_path / "reconstructions.png"),
        "latent": plotting.plot_latent_space(model, digits, labels, path=tmp_path / "latent.png"),
        "manifold": plotting.plot_latent_manifold(model, n=6, path=tmp_path / "manifold.png"),
        "traversals": plotting.plot_traversals(model, digits[0], values=[-2, 0, 2],
                                               path=tmp_path / "traversals.png"),
        "interpolation": plotting.plot_interpolation(model, digits[0], digits[1], steps=5,
                                                     method="slerp",
                                                     path=tmp_path / "interpolation.png"),
        "kl": plotting.plot_kl_per_layer({"vae": model}, digits, path=tmp_path / "kl.png"),
    }
    for name, figure in figures.items():
        assert figure.axes, name
        _pixels(tmp_path / f"{name}.png")
    # Two-row layout of reconstructions: 12 inputs in rows of 10 -> 2 pairs of rows x 10 axes.
    assert len(figures["reconstructions"].axes) == 4 * 10
    # The 2-D latent space is plotted as it is, with one scatter per label.
    axis = figures["latent"].axes[0]
    assert axis.get_xlabel() == "z[0]" and len(axis.collections) == 10
    points = np.concatenate([c.get_offsets() for c in axis.collections])
    from tfvae.plotting import ModelView
    codes = ModelView(model).code(digits)
    np.testing.assert_allclose(np.sort(points[:, 0]), np.sort(codes[:, 0]), atol=1e-4)


def test_latent_projection_and_interpolation_ends(ae, digits):
    from tfvae import plotting

    codes = plotting.ModelView(ae).code(digits)
    projected, labels = plotting.project_2d(codes)
    assert projected.shape == (len(digits), 2) and labels[0].startswith("PC 1")
    # PCA keeps the variance along the first axis at least that along the second.
    assert projected[:, 0].var() >= projected[:, 1].var()
    # The path starts and ends at the decoded codes of the two inputs.
    path = plotting.interpolate(ae, digits[0], digits[1], steps=4)
    ends = ae.reconstruct_outputs(digits[:2])["x"].numpy()
    np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-5)
    figure = plotting.plot_histograms({"a": np.arange(10.0), "b": np.arange(5.0) + 3})
    assert len(figure.axes[0].patches) > 0


def test_kl_per_layer_has_one_bar_per_layer(digits):
    import tfvae
    from tfvae import plotting

    model = tfvae.models.get("hvae", input_shape=(8, 8, 1), latent_dims=(4, 2),
                             hidden_units=(16,))
    figure = plotting.plot_kl_per_layer({"hvae": model, "vae": tfvae.models.get(
        "vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(16,))}, digits[:16])
    assert len(figure.axes[0].patches) == 3    # kl_1, kl_2 and the VAE's kl


def test_cli_plot(exported, tmp_path):
    """`tfvae plot` writes the PNG from an export (one kind: each run imports TensorFlow)."""
    env_python = sys.executable
    for kind in ("latent",):
        out = tmp_path / f"{kind}.png"
        result = subprocess.run(
            [env_python, "-m", "tfvae.cli", "plot", str(exported.path), "--kind", kind,
             "--dataset", "digits", "--num", "100", "--out", str(out)],
            capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["kind"] == kind
        _pixels(out)


def test_image_summaries_callback_writes_images(digits, tmp_path):
    import tensorflow as tf

    import tfvae

    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=2, hidden_units=(16,))
    model.compile(jit_compile=False)
    callback = tfvae.callbacks.ImageSummaries(tmp_path, digits[:6], every_n_epochs=2,
                                              num_samples=9)
    model.fit(digits, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    steps = {}
    for event_file in (tmp_path / "images").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            for value in event.summary.value:
                width, height, png = tf.make_ndarray(value.tensor)
                assert value.metadata.plugin_data.plugin_name == "images"
                image = tf.io.decode_png(png).numpy()
                assert image.shape[:2] == (int(height), int(width))
                steps.setdefault(value.tag, []).append((event.step, image.shape))
    # Epochs 0 and 2 (every 2nd, and the last one) for both grids.
    assert sorted(s for s, _ in steps["samples"]) == [0, 2]
    assert sorted(s for s, _ in steps["reconstructions"]) == [0, 2]
    # image_grid's tiles: 8x8 images enlarged 4 times (32 px), 2 px apart.
    assert steps["samples"][0][1][:2] == (3 * 32 + 2 * 2, 3 * 32 + 2 * 2)  # 3 x 3 samples
    # a row of 6 inputs over their reconstructions
    assert steps["reconstructions"][0][1][:2] == (2 * 32 + 2, 6 * 32 + 5 * 2)
    with pytest.raises(ValueError, match="every_n_epochs"):
        tfvae.callbacks.ImageSummaries(tmp_path, digits[:2], every_n_epochs=0)


# ---- image grids: gaps and enlarged tiles ---------------------------------------------------
def test_image_grid_has_gaps_and_enlarges_small_tiles(rng):
    from tfvae import plotting

    images = rng.random((5, 8, 8, 1)).astype(np.float32)
    grid = plotting.image_grid(images, columns=3)
    # 8x8 tiles drawn 4x (32 px, nearest neighbour), 2 px of gap between them: 2 rows x 3.
    assert plotting.tile_scale(8, 8) == 4 and plotting.tile_gap(32, 32) == 2
    assert grid.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 1)
    for i, image in enumerate(images):
        r, c = divmod(i, 3)
        tile = grid[r * 34:r * 34 + 32, c * 34:c * 34 + 32]
        np.testing.assert_array_equal(tile, np.kron(image, np.ones((4, 4, 1), np.float32)))
    gap = plotting.GAP_VALUE
    assert np.all(grid[32:34] == gap)                       # between the rows
    assert np.all(grid[:, 32:34] == gap) and np.all(grid[:, 66:68] == gap)  # the columns
    assert np.all(grid[34:, 68:] == gap)                    # the empty sixth cell
    # MNIST-sized tiles: 2x (56 px), 4 px apart; large tiles stay as they are.
    assert plotting.image_grid(np.zeros((4, 28, 28, 1))).shape == (2 * 56 + 4, 2 * 56 + 4, 1)
    assert plotting.image_grid(np.zeros((2, 32, 32, 3)), columns=2).shape == (32, 66, 3)
    # The old mosaic on request: tiles as they are, touching.
    np.testing.assert_array_equal(plotting.image_grid(images[:2], columns=2, gap=0, scale=1),
                                  np.concatenate([images[0], images[1]], axis=1))
    with pytest.raises(ValueError, match="scale"):
        plotting.image_grid(images, scale=0)


def test_saved_grid_shows_the_mosaic_pixel_for_pixel(rng, tmp_path):
    """The PNG holds the mosaic at a whole zoom below its title: every tile its image's pixels
    (enlarged), every gap the gap's grey."""
    import matplotlib.image

    from tfvae import plotting

    images = rng.random((16, 8, 8, 1)).astype(np.float32)
    path = plotting.save_image_grid(images, tmp_path / "grid.png", title="sixteen")
    grid = plotting.image_grid(images)[..., 0]
    png = matplotlib.image.imread(str(path))[..., 0]
    zoom = png.shape[1] // grid.shape[1]
    assert zoom >= 1 and png.shape[1] == grid.shape[1] * zoom
    shown = png[-grid.shape[0] * zoom:]
    # 2/255: the grey colormap's 256-entry table, then the PNG's 8 bits
    np.testing.assert_allclose(shown, np.kron(grid, np.ones((zoom, zoom))), atol=2 / 255)
    assert png.shape[0] > shown.shape[0]  # the title's band


def test_tiled_figures_have_grey_gaps_between_big_tiles(trained, digits):
    """reconstructions and traversals keep one axes per tile: tiles of 0.9 inch (90 px, an
    8x8 digit enlarged over 10 times), apart by a gap that shows the gap's grey."""
    from tfvae import plotting

    for figure in (plotting.plot_reconstructions(trained, digits[:4], columns=4),
                   plotting.plot_traversals(trained, digits[0], values=[-1, 0, 1])):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(figure)  # pyplot let go of the figure: draw it anew, at 100 dpi
        canvas.draw()
        pixels = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
        height, width = pixels.shape[:2]
        first, second = figure.axes[0].get_position(), figure.axes[1].get_position()
        assert first.width * width >= 32 and first.height * height >= 32
        assert second.x0 > first.x1  # a gap between them
        x = int(round((first.x1 + second.x0) / 2 * width))
        y = int(round((1 - (first.y0 + first.y1) / 2) * height))
        np.testing.assert_allclose(pixels[y, x], plotting.GAP_VALUE, atol=0.01)
