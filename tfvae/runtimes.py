"""LiteRT and ONNX exports, run by their own runtimes without TensorFlow: what `tfvae.load`
returns for a version folder of those formats (tfvae.formats).

    model = tfvae.load("exports/vae_mnist_onnx")       # an ONNXModel: onnxruntime, no TensorFlow
    model.sample([0, 1, 2])["x"]                        # as the SavedModel gives, to float rounding
    model.encode(images, seed=[7, 8])["z"]

The runtimes are optional: `pip install "tfvae[litert]"` (ai-edge-litert) or
`pip install "tfvae[onnx]"` (onnxruntime). Inputs are checked as `LoadedModel`'s are, against
the signature contract and the shapes of the model card.
"""
from tfvae.formats import LITERT_FILE, onnx_file, onnx_output_name
from tfvae.loading import ConvertedExport, InvalidExportError


def _import(module, extra):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"running this export needs {module.split('.')[0]}: "
                          f'pip install "tfvae[{extra}]" ({error})') from None


class LiteRTModel(ConvertedExport):
    """A LiteRT export (`model.tflite`, every signature in one file), run by ai-edge-litert's
    Interpreter through its signature runners; inputs of any batch size are resized to."""

    def __init__(self, path, num_threads=None):
        super().__init__(path)
        interpreter = _import("ai_edge_litert.interpreter", "litert")
        try:
            self.interpreter = interpreter.Interpreter(model_path=str(self.path / LITERT_FILE),
                                                       num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise InvalidExportError(f"could not load {self.path / LITERT_FILE}: {error}") from None
        self._runners = {}

    def _run_converted(self, signature, arrays):
        runner = self._runners.get(signature)
        if runner is None:
            runner = self._runners[signature] = self.interpreter.get_signature_runner(signature)
        return dict(runner(**arrays))


class ONNXModel(ConvertedExport):
    """An ONNX export (`<signature>.onnx` per signature), run by ONNX Runtime on the CPU; each
    signature's session is made on first use."""

    def __init__(self, path, session_options=None):
        super().__init__(path)
        self._onnxruntime = _import("onnxruntime", "onnx")
        self._options = session_options
        self._sessions = {}

    def session(self, signature):
        """The onnxruntime.InferenceSession of a signature."""
        session = self._sessions.get(signature)
        if session is None:
            path = self.path / onnx_file(signature)
            try:
                session = self._onnxruntime.InferenceSession(
                    str(path), sess_options=self._options, providers=["CPUExecutionProvider"])
            except Exception as error:  # onnxruntime raises its own types for a bad file
                raise InvalidExportError(f"could not load {path}: {error}") from None
            self._sessions[signature] = session
        return session

    def _run_converted(self, signature, arrays):
        session = self.session(signature)
        names = [output.name for output in session.get_outputs()]
        values = session.run(names, arrays)
        return {_signature_output(name, arrays): value for name, value in zip(names, values)}


def _signature_output(name, inputs):
    """The signature's name of an ONNX output: x_out is x where an input is called x
    (tfvae.formats.onnx_output_name)."""
    plain = name.removesuffix("_out")
    return plain if plain != name and onnx_output_name(plain, inputs) == name else name
