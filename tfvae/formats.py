"""The formats an export can take, and their files in a version folder of TF Serving's
`<name>/<version>/` layout. Every format has the same signatures, inputs and outputs
(`tfvae.signatures`), any batch size, and the model card at `assets/tfvae_card.json`.

| format        | files in `<name>/<version>/`         | run by                                  |
| ---           | ---                                  | ---                                     |
| `saved_model` | `saved_model.pb`, `variables/`       | TensorFlow, TF Serving (`tfvae.load`)   |
| `litert`      | `model.tflite`: every signature      | LiteRT (`ai-edge-litert`), phones       |
| `onnx`        | `<signature>.onnx`, one per signature | ONNX Runtime, `onnxruntime-web`         |

    tfvae.export(model, "runs/vae_digits_onnx", format="onnx")    # runs/vae_digits_onnx/1/
    tfvae.load("runs/vae_digits_onnx").sample([0, 1])["x"]        # ONNX Runtime, no TensorFlow

A family whose signature needs TensorFlow ops that LiteRT and ONNX lack names it in
`tensorflow_only_signatures` (the contractive autoencoder's `score`, which differentiates its
encoder); those exports leave it out, and their card says why (`signatures_left_out`).

`serving_default` is `reconstruct`'s alias in a SavedModel only: LiteRT and ONNX files hold the
six signatures by their own names. ONNX names every value of a graph once, so an output named as
an input (`reconstruct`'s `x`) is `x_out` in the .onnx file (`onnx_output_name`); tfvae's ONNX
loader gives it back as `x`.

Writing LiteRT and ONNX needs TensorFlow and the converters (`pip install "tfvae[litert,onnx]"`:
TensorFlow's own TFLiteConverter, tf2onnx); this module imports them only when it converts.
Reading a version folder's format needs neither.
"""
import logging
from pathlib import Path

FORMATS = ("saved_model", "litert", "onnx")
#: the file that marks a version folder of each format
MARKERS = {"saved_model": "saved_model.pb", "litert": "model.tflite", "onnx": "encode.onnx"}
LITERT_FILE = MARKERS["litert"]
#: the ONNX opset of the exports: onnxruntime 1.16 or newer and onnxruntime-web run it
ONNX_OPSET = 17


def format_of(version_folder):
    """The format of the export in `version_folder` ("saved_model", "litert" or "onnx"), or
    None when it holds none.

        format_of("saved_models/vae_mnist/4")   # "saved_model"
    """
    folder = Path(version_folder)
    for name, marker in MARKERS.items():
        if (folder / marker).is_file():
            return name
    return None


def check_format(format):
    """`format` if it is one of FORMATS, else ValueError naming them."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
    return format


def onnx_output_name(output, input_names):
    """The name of a signature's output in its .onnx file: `output`, or `output + "_out"`
    when an input has the same name (ONNX names each value of a graph once).

        onnx_output_name("x", ("x",))   # "x_out": reconstruct's output
        onnx_output_name("x", ("z",))   # "x": decode's
    """
    return f"{output}_out" if output in input_names else output


def onnx_file(signature):
    """The file name of a signature's ONNX graph: "encode.onnx", ..."""
    return f"{signature}.onnx"


def write(format, module, saved_model, folder, left_out=()):
    """Write the `format` files of an export module (tfvae.exporting.ExportModule) into
    `folder`; `saved_model` is the module saved as a SavedModel (LiteRT converts from it).
    `left_out`: signatures not to convert (a family's `tensorflow_only_signatures`). The
    SavedModel format is `saved_model` itself: nothing to write."""
    from tfvae.signatures import SIGNATURES

    check_format(format)
    folder = Path(folder)
    names = [name for name in SIGNATURES if name not in left_out]
    if format == "litert":
        _write_litert(saved_model, folder / LITERT_FILE, names)
    elif format == "onnx":
        _write_onnx(module, folder, names)


def _write_litert(saved_model, path, names):
    import tensorflow as tf

    # TensorFlow's builtin ops only: the draws are tfvae.randomness' integer arithmetic, which
    # LiteRT has, not TensorFlow's random ops, which it has not; no Flex delegate is needed.
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=names)
    path.write_bytes(converter.convert())


def _write_onnx(module, folder, names):
    import tensorflow as tf
    import tf2onnx

    _register_onnx_handlers()
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # tf2onnx logs every step of every conversion at INFO
    try:
        for name in names:
            function = getattr(module, name)
            specs = function.input_signature
            inputs = tuple(spec.name for spec in specs)

            def renamed(*values, function=function, inputs=inputs):
                return {onnx_output_name(key, inputs): value
                        for key, value in function(*values).items()}

            tf2onnx.convert.from_function(
                tf.function(renamed, input_signature=specs), input_signature=specs,
                opset=ONNX_OPSET, output_path=str(folder / onnx_file(name)))
    finally:
        quiet.setLevel(level)


_onnx_handlers_registered = False


def _register_onnx_handlers():
    """tf2onnx handlers for the TensorFlow ops of tfvae's graphs that it does not convert:
    Expm1 (TFP's KL divergence between normals) as Exp - 1, which is what ONNX has; in float32
    the two differ by less than 1e-7 for the log-ratios of scales a KL takes."""
    global _onnx_handlers_registered
    if _onnx_handlers_registered:
        return
    import numpy as np
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Expm1")
    class Expm1:  # noqa: F841 - the decorator registers it
        @classmethod
        def version_1(cls, ctx, node, **kwargs):
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
            exp = ctx.make_node("Exp", [node.input[0]]).output[0]
            one = ctx.make_const(utils.make_name("one"), np.array(1, dtype)).output[0]
            outputs, name = node.output, node.name
            ctx.remove_node(name)
            ctx.make_node("Sub", [exp, one], outputs=outputs, name=name)

    _onnx_handlers_registered = True
