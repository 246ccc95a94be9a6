"""Figures of what a model learnt (matplotlib): samples, reconstructions, the latent space, the
2-D latent manifold, latent traversals, interpolations, per-layer KL and score histograms.

Every plot takes either an in-memory model (a `tfvae.models` model) or a loaded export
(`tfvae.load(...)`), returns the matplotlib Figure and, given `path`, also writes it as a PNG:

    import tfvae
    from tfvae import plotting

    model = tfvae.load("vae_mnist")
    plotting.plot_samples(model, num=64, path="samples.png")
    plotting.plot_latent_space(model, images, labels, path="latent.png")

Outside Jupyter the figures are drawn with the Agg backend (files only, no display needed) and
released from pyplot once made; in a notebook they display inline as usual.
"""
import os
import statistics
import sys
import textwrap

import numpy as np

#: how many examples run through a model at once (keeps memory flat for large inputs)
CHUNK = 500
#: image tiles smaller than this (pixels, shorter side) are enlarged by a whole factor, pixel
#: by pixel, until they are at least this size: an 8x8 digit becomes 32x32
MIN_TILE = 32
#: the gap between tiles, as a share of a tile's (enlarged) size; at least one pixel
GAP_FRACTION = 1 / 16
#: the gaps' grey level: neither the black of a digit's background nor the white of its strokes
GAP_VALUE = 0.5
#: a mosaic is drawn with a whole number of screen pixels per grid pixel, up to about this wide
MOSAIC_PIXELS = 480
_DPI = 100


def _pyplot():
    import matplotlib

    if not _in_notebook():
        matplotlib.use("Agg")  # files only: works without a display, in CI and on servers
    import matplotlib.pyplot as plt

    return plt


def _in_notebook():
    # ipykernel sets MPLBACKEND to its inline backend; keep it so figures show in notebooks.
    return "ipykernel" in sys.modules and "inline" in os.environ.get("MPLBACKEND", "inline")


def _finish(figure, path, tight=True):
    """Save to `path` (if given); outside notebooks drop pyplot's reference so figures made in
    a loop do not pile up. The returned Figure stays usable (savefig works after close).
    tight=False keeps the figure's own size, for layouts placed to the pixel."""
    if path is not None:
        figure.savefig(path, bbox_inches="tight" if tight else None, dpi=_DPI)
    if not _in_notebook():
        _pyplot().close(figure)
    return figure


# ---- one interface over in-memory models and loaded exports ------------------------------------
class ModelView:
    """`encode`, `decode`, `sample`, `reconstruct`, `score` returning dicts of numpy arrays,
    whether `model` is a tfvae model or a `LoadedModel` (anything with the export's signatures).
    Inputs are run in chunks of `CHUNK` examples."""

    def __init__(self, model):
        if isinstance(model, ModelView):
            model = model.model
        self.model = model
        self.loaded = hasattr(model, "signatures") and hasattr(model, "run")
        if not self.loaded and not hasattr(model, "encode_outputs"):
            raise TypeError(f"expected a tfvae model or tfvae.load(...)'s LoadedModel, got "
                            f"{type(model).__name__}")

    @property
    def name(self):
        if self.loaded:
            return (self.model.card or {}).get("model", "model")
        return getattr(self.model, "registry_name", self.model.name)

    @property
    def input_shape(self):
        if self.loaded:
            return tuple(self.model.input_spec("reconstruct").shape[1:])
        return tuple(self.model.input_shape)

    @property
    def latent_shape(self):
        if self.loaded:
            return tuple(self.model.input_spec("decode").shape[1:])
        return tuple(self.model.latent_shape)

    def _run(self, signature, value, dtype=np.float32):
        value = np.asarray(value, dtype)
        parts = [self._run_one(signature, value[i:i + CHUNK], i)
                 for i in range(0, len(value), CHUNK)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _run_one(self, signature, value, first_row):
        """One chunk; a draw's seeds are the rows' indices in the whole batch, as the loader's
        default, however the batch is chunked."""
        from tfvae import signatures

        inputs = {signatures.input_names(signature)[0]: value}
        if "seed" in signatures.input_names(signature)[1:]:
            inputs["seed"] = first_row + np.arange(len(value), dtype=np.int64)
        if self.loaded:
            return self.model.run(signature, {
                k: v for k, v in inputs.items() if k in self.model.input_specs(signature)})
        import tensorflow as tf

        function = getattr(self.model, signatures.get(signature).method)
        return {k: v.numpy() for k, v in function(*map(tf.constant, inputs.values())).items()}

    def encode(self, x):
        return self._run("encode", x)

    def decode(self, z):
        return self._run("decode", z)["x"]

    def sample(self, seeds):
        return self._run("sample", seeds, np.int64)["x"]

    def reconstruct(self, x):
        return self._run("reconstruct", x)["x"]

    def score(self, x):
        return self._run("score", x)

    def code(self, x):
        """The deterministic code that `reconstruct` decodes: `code` when the model gives one
        (autoencoders, IAF), else the posterior mean (of z_1 for hierarchical models)."""
        out = self.encode(x)
        return out["code"] if "code" in out else out["mean"]


def _images(values):
    """Images as [n, h, w] (grey) or [n, h, w, 3] for imshow."""
    values = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
    return values[..., 0] if values.shape[-1] == 1 else values


def _tile_axes(plt, rows, columns, tile_shape, title=None, cell=0.9, left=0.0, bottom=0.0):
    """A figure of rows x columns axes, one per image tile: each `cell` inches wide and of the
    tile's aspect (so that the image fills it), GAP_FRACTION of a tile apart on a GAP_VALUE
    backdrop, which is what shows in the gaps. `left` and `bottom`: inches kept for labels.

        figure, axes = _tile_axes(plt, 2, 10, (8, 8), title="inputs over reconstructions")
    """
    from matplotlib.patches import Rectangle

    height, width = tile_shape[:2]
    cell_w, cell_h = cell, cell * height / width
    gap = min(cell_w, cell_h) * GAP_FRACTION
    pad, top = 0.05, (0.45 if title else 0.05)
    grid_w, grid_h = columns * cell_w + (columns - 1) * gap, rows * cell_h + (rows - 1) * gap
    fig_w, fig_h = left + pad + grid_w + pad, bottom + pad + grid_h + top
    x0, y0 = (left + pad) / fig_w, (bottom + pad) / fig_h
    figure, axes = plt.subplots(rows, columns, squeeze=False, figsize=(fig_w, fig_h), gridspec_kw={
        "left": x0, "right": x0 + grid_w / fig_w, "bottom": y0, "top": y0 + grid_h / fig_h,
        # gridspec's spaces are shares of the mean axes width / height
        "wspace": gap / cell_w, "hspace": gap / cell_h})
    grey = (GAP_VALUE,) * 3
    figure.add_artist(Rectangle((x0, y0), grid_w / fig_w, grid_h / fig_h, facecolor=grey,
                                edgecolor="none", transform=figure.transFigure, zorder=-1))
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_facecolor(grey)  # a rounding sliver beside an image reads as gap, not white
        for spine in axis.spines.values():
            spine.set_visible(False)
    if title:
        figure.suptitle(title, y=1 - 0.08 / fig_h, va="top")
    return figure, axes


def _show(axis, image):
    axis.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")


# ---- image grids -----------------------------------------------------------------------------
def tile_scale(height, width):
    """The whole factor image_grid enlarges height x width tiles by: the least that makes the
    shorter side at least MIN_TILE pixels (1 for tiles that large already).

        tile_scale(8, 8), tile_scale(28, 28), tile_scale(32, 32)      # 4, 2, 1
    """
    return max(1, -(-MIN_TILE // max(1, min(height, width))))


def tile_gap(height, width):
    """The pixels image_grid puts between (enlarged) height x width tiles: GAP_FRACTION of the
    shorter side, at least 1.

        tile_gap(32, 32), tile_gap(56, 56)                           # 2, 4
    """
    return max(1, int(round(min(height, width) * GAP_FRACTION)))


def image_grid(images, columns=None, gap=None, scale=None, gap_value=GAP_VALUE):
    """[n, h, w, c] images in [0, 1] -> one mosaic array, tiles `gap` pixels apart.

    Each tile is the image enlarged `scale` times, pixel by pixel (nearest neighbour): by
    default `tile_scale(h, w)`, so small images stay legible (8x8 -> 32x32). Tiles are
    `tile_gap` pixels apart by default; gaps and empty cells hold `gap_value`. The mosaic is
    [rows * H + (rows - 1) * gap, columns * W + (columns - 1) * gap, c] for H, W = h * scale,
    w * scale, with columns = ceil(sqrt(n)) unless given.

        image_grid(np.zeros((64, 8, 8, 1))).shape                  # (270, 270, 1): 8 x 8 tiles
        image_grid(images, gap=0, scale=1)                          # tiles as they are, touching
    """
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    scale = tile_scale(h, w) if scale is None else int(scale)
    if scale < 1:
        raise ValueError(f"scale={scale} must be a whole factor >= 1")
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = h * scale, w * scale
    gap = tile_gap(h, w) if gap is None else int(gap)
    if gap < 0:
        raise ValueError(f"gap={gap} must be >= 0 pixels")
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, c),
                   gap_value, np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = r * (h + gap), col * (w + gap)
        grid[top:top + h, left:left + w] = image
    return grid


def plot_images(images, columns=None, title=None, path=None, gap=None, scale=None):
    """One mosaic of [n, h, w, c] images in [0, 1] (`image_grid`: enlarged tiles with gaps),
    drawn with a whole number of screen pixels per mosaic pixel, so every tile and gap keeps
    its size in the PNG; the title above it. Returns the Figure.

        plot_images(images, columns=8, title="samples", path="samples.png")
    """
    plt = _pyplot()
    grid = image_grid(images, columns, gap=gap, scale=scale)
    height, width = grid.shape[:2]
    zoom = max(1, MOSAIC_PIXELS // max(height, width))
    lines = textwrap.wrap(title, max(20, width * zoom // 7)) if title else []
    title_px = 10 + 17 * len(lines) if lines else 0  # 10-point lines at 100 dpi
    fig_w, fig_h = width * zoom, height * zoom + title_px
    figure = plt.figure(figsize=(fig_w / _DPI, fig_h / _DPI), dpi=_DPI)
    axis = figure.add_axes((0, 0, 1, height * zoom / fig_h))
    # aspect="auto": the axes already has the mosaic's shape, to the pixel
    axis.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
                interpolation="nearest", aspect="auto")
    axis.axis("off")
    if lines:
        figure.text(0.5, 1 - 5 / fig_h, "\n".join(lines), ha="center", va="top", fontsize=10)
    return _finish(figure, path, tight=False)


def save_image_grid(images, path, columns=None, title=None, gap=None, scale=None):
    """Write images as a PNG mosaic (see `plot_images`); returns the path.

        save_image_grid(served.sample(range(64))["x"], "samples.png", title="samples")
    """
    plot_images(images, columns=columns, title=title, path=path, gap=gap, scale=scale)
    return path


def plot_samples(model, num=64, seed=0, columns=None, title=None, path=None):
    """Decoded samples for the seeds seed..seed+num-1 (the same seeds give the same images)."""
    view = ModelView(model)
    images = view.sample(np.arange(seed, seed + num))
    if title is None:
        title = f"{view.name}: samples (seeds {seed}..{seed + num - 1})"
    return plot_images(images, columns=columns, title=title, path=path)


def plot_reconstructions(model, x, columns=10, title=None, path=None):
    """Inputs with their reconstructions below them: pairs of rows, `columns` images wide."""
    view = ModelView(model)
    x = np.asarray(x, np.float32)
    reconstructions = view.reconstruct(x)
    columns = min(columns, len(x))
    pairs = int(np.ceil(len(x) / columns))
    plt = _pyplot()
    figure, axes = _tile_axes(plt, 2 * pairs, columns, x.shape[1:], title=title or
                              f"{view.name}: inputs (odd rows), reconstructions (even rows)")
    for i, (original, rebuilt) in enumerate(zip(_images(x), _images(reconstructions))):
        row, col = divmod(i, columns)
        _show(axes[2 * row, col], original)
        _show(axes[2 * row + 1, col], rebuilt)
    return _finish(figure, path)


# ---- the latent space ------------------------------------------------------------------------
def project_2d(codes, method="pca", seed=0):
    """[n, d] codes -> [n, 2]: as they are when d = 2, else PCA (or t-SNE, `method="tsne"`)."""
    codes = np.asarray(codes, np.float64).reshape(len(codes), -1)
    if codes.shape[1] == 2:
        return codes, ("z[0]", "z[1]")
    if codes.shape[1] == 1:
        return np.concatenate([codes, np.zeros_like(codes)], axis=1), ("z[0]", "")
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(codes) - 1) / 3))
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(codes), \
            ("t-SNE 1", "t-SNE 2")
    if method != "pca":
        raise ValueError(f"method={method!r} must be 'pca' or 'tsne'")
    centred = codes - codes.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular[:2] ** 2 / max(np.sum(singular ** 2), 1e-12)
    return centred @ vt[:2].T, tuple(f"PC {i + 1} ({100 * e:.0f}% of variance)"
                                     for i, e in enumerate(explained))


def plot_latent_space(model, x, labels=None, method="pca", title=None, path=None):
    """The codes of x (posterior means, or the autoencoder's codes) in the plane, coloured by
    label: directly for a 2-D latent space, else projected (PCA, or t-SNE with method="tsne")."""
    view = ModelView(model)
    points, (xlabel, ylabel) = project_2d(view.code(x), method)
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    if labels is None:
        axis.scatter(points[:, 0], points[:, 1], s=6, alpha=0.7)
    else:
        labels = np.asarray(labels).reshape(-1)
        classes = np.unique(labels)
        colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, label in enumerate(classes):
            chosen = labels == label
            axis.scatter(points[chosen, 0], points[chosen, 1], s=6, alpha=0.7,
                         color=colours(i % colours.N), label=str(label))
        axis.legend(markerscale=3, fontsize="small", loc="best", title="label")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    dims = int(np.prod(view.latent_shape))
    axis.set_title(title or f"{view.name}: latent space ({dims}-D"
                   + ("" if dims <= 2 else f", {method.upper()} projection") + ")")
    return _finish(figure, path)


def _normal_quantiles(n, tail=0.05):
    """n evenly spaced quantiles of N(0, 1) between tail and 1 - tail."""
    return np.array([statistics.NormalDist().inv_cdf(p) for p in np.linspace(tail, 1 - tail, n)])


def plot_latent_manifold(model, n=15, dims=(0, 1), center=None, values=None, title=None,
                         path=None):
    """Decoded codes on an n x n grid over two latent dimensions (Kingma & Welling's figure 4).

    The grid runs over quantiles of N(0, 1) (or `values`); the other dimensions stay at `center`
    (default 0, the prior's mean). For a 2-D latent space this is the whole learnt manifold.
    """
    view = ModelView(model)
    latent = int(np.prod(view.latent_shape))
    if latent < 2:
        raise ValueError(f"plot_latent_manifold needs a latent space of 2 or more dimensions, "
                         f"not {latent}")
    values = _normal_quantiles(n) if values is None else np.asarray(values, np.float32)
    base = np.zeros(latent, np.float32) if center is None else np.asarray(center, np.float32).reshape(-1)
    codes = np.tile(base, (len(values) ** 2, 1))
    for row, y in enumerate(values[::-1]):          # top row: the largest value of dims[1]
        for col, v in enumerate(values):
            codes[row * len(values) + col, dims[0]] = v
            codes[row * len(values) + col, dims[1]] = y
    images = view.decode(codes.reshape(-1, *view.latent_shape))
    return plot_images(images, columns=len(values), path=path, title=title or (
        f"{view.name}: latent manifold over z[{dims[0]}] (right) and z[{dims[1]}] (up)"
        + ("" if latent == 2 else ", other dimensions fixed")))


def plot_traversals(model, x, dims=None, values=None, title=None, path=None):
    """Decoded codes of one input with one latent dimension at a time moved over `values`
    (default: 9 values from -3 to 3): one row per dimension in `dims`. By default the 8
    dimensions with the smallest posterior stddev for this input, the ones the model uses
    (inactive units keep stddev ~1 and change nothing), or the first 8 for autoencoders."""
    view = ModelView(model)
    x = np.asarray(x, np.float32)
    if x.shape == view.input_shape:
        x = x[None]
    encoded = view.encode(x[:1])
    code = (encoded["code"] if "code" in encoded else encoded["mean"])[0].reshape(-1)
    if dims is None:
        stddev = encoded["stddev"][0].reshape(-1)
        order = np.argsort(stddev, kind="stable") if np.any(stddev > 0) else np.arange(code.size)
        dims = sorted(order[:min(8, code.size)].tolist())
    dims = list(dims)
    values = np.linspace(-3, 3, 9) if values is None else np.asarray(values, np.float32)
    codes = np.tile(code, (len(dims) * len(values), 1))
    for r, d in enumerate(dims):
        codes[r * len(values):(r + 1) * len(values), d] = values
    images = _images(view.decode(codes.reshape(-1, *view.latent_shape)))
    plt = _pyplot()
    figure, axes = _tile_axes(plt, len(dims), len(values) + 1, view.input_shape, left=0.45,
                              bottom=0.25, title=title or
                              f"{view.name}: latent traversals (one dimension per row)")
    for r, d in enumerate(dims):
        _show(axes[r, 0], _images(x[:1])[0])
        for c in range(len(values)):
            _show(axes[r, c + 1], images[r * len(values) + c])
        axes[r, 0].set_ylabel(f"z[{d}]", rotation=0, labelpad=14)
    for c, v in enumerate(values):
        axes[-1, c + 1].set_xlabel(f"{v:+.1f}", fontsize="small")
    axes[-1, 0].set_xlabel("input", fontsize="small")
    return _finish(figure, path)


def interpolate(model, x1, x2, steps=10, method="linear"):
    """Decoded codes along the path from x1's code to x2's: [steps, *input_shape].
    method="slerp" follows the great circle, which stays where a Gaussian prior has its mass."""
    view = ModelView(model)
    pair = np.stack([np.asarray(x1, np.float32).reshape(view.input_shape),
                     np.asarray(x2, np.float32).reshape(view.input_shape)])
    a, b = view.code(pair).reshape(2, -1)
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "slerp":
        cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        if omega < 1e-6:
            codes = (1 - t) * a + t * b
        else:
            codes = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
    elif method == "linear":
        codes = (1 - t) * a + t * b
    else:
        raise ValueError(f"method={method!r} must be 'linear' or 'slerp'")
    return view.decode(codes.astype(np.float32).reshape(-1, *view.latent_shape))


def plot_interpolation(model, x1, x2, steps=10, method="linear", title=None, path=None):
    """Row of decoded codes from x1 to x2, the two inputs at the ends."""
    view = ModelView(model)
    images = interpolate(view, x1, x2, steps, method)
    row = np.concatenate([np.asarray(x1, np.float32).reshape(1, *view.input_shape), images,
                          np.asarray(x2, np.float32).reshape(1, *view.input_shape)])
    return plot_images(row, columns=len(row), path=path, title=title or (
        f"{view.name}: {method} interpolation (inputs at the ends)"))


# ---- numbers -----------------------------------------------------------------------------------
def plot_kl_per_layer(models, x, title=None, path=None):
    """Bars of the mean KL term per stochastic layer (`kl_1`, ..., or `kl`) on x, one group per
    model: where a hierarchical VAE puts its information. `models`: a model or {name: model}."""
    if not isinstance(models, dict):
        models = {ModelView(models).name: models}
    kls = {}
    for name, model in models.items():
        scores = ModelView(model).score(x)
        layers = sorted((k for k in scores if k.startswith("kl_") and k[3:].isdigit()),
                        key=lambda k: int(k[3:])) or ["kl"]
        kls[name] = [float(np.mean(scores[k])) for k in layers]
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(1.5 + 1.2 * sum(len(v) for v in kls.values()), 4))
    width = 0.8 / max(len(v) for v in kls.values())
    for g, (name, values) in enumerate(kls.items()):
        for l, value in enumerate(values):
            bar = axis.bar(g + (l - (len(values) - 1) / 2) * width, value, width * 0.95,
                           color=_pyplot().get_cmap("viridis")(l / max(len(values) - 1, 1)))
            axis.bar_label(bar, [f"z_{l + 1}\n{value:.1f}"], fontsize="x-small")
    axis.set_xticks(range(len(kls)), list(kls))
    axis.set_ylabel("mean KL per example (nats)")
    axis.set_title(title or "KL per stochastic layer (z_1 next to x)")
    axis.margins(y=0.2)
    return _finish(figure, path)


def plot_histograms(named_values, bins=50, xlabel="score", title=None, path=None):
    """Overlaid, normalised histograms of {name: values}, e.g. ELBOs of normal and odd inputs."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    everything = np.concatenate([np.asarray(v, np.float64).reshape(-1) for v in named_values.values()])
    edges = np.histogram_bin_edges(everything[np.isfinite(everything)], bins=bins)
    for name, values in named_values.items():
        axis.hist(np.asarray(values, np.float64).reshape(-1), bins=edges, alpha=0.55,
                  density=True, label=f"{name} (n = {np.size(values)})")
    axis.set_xlabel(xlabel)
    axis.set_ylabel("density")
    axis.legend()
    if title:
        axis.set_title(title)
    return _finish(figure, path)


#: `tfvae plot --kind` values: the plots that need only the model (and inputs for some)
KINDS = ("samples", "reconstructions", "latent", "manifold", "traversals", "interpolation")
