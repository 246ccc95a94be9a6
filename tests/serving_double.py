"""A TEST DOUBLE for TensorFlow Serving, for tests only: not a product server, never shipped.

No package registry carries the TF Serving binary, so the tests stand in for it with loopback
servers (127.0.0.1, an ephemeral port, a background thread, stopped at teardown) that run the
real SavedModel the way TF Serving does: through TensorFlow's session-based loader (tag
`serve`) and C++ `Session::Run` fed and fetched by the signature's tensor names, which is the
contract of TF Serving's `SavedModelBundle`. Around that run they follow TF Serving's own code
(model_servers/http_rest_api_handler.cc, util/json_tensor.cc, servables/tensorflow/
predict_util.cc, cc/saved_model/util.cc): the same URL patterns, JSON formats, checks, error
messages, status codes and `{"error": "..."}` bodies, so that the clients' handling of answers
and errors is tested against what the real server would say. Simplifications: all versions on
disk are loaded (TF Serving's default policy loads only the latest), no batching, no
classify/regress.

    with RESTDouble(models_dir) as server:          # server.url == "http://127.0.0.1:<port>"
        RESTClient(server.url, "vae").encode(x)
    with GRPCDouble(models_dir) as server:          # needs grpcio and tensorflow-serving-api
        GRPCClient(server.target, "vae").encode(x)
"""
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import tensorflow as tf

# absl/status codes -> HTTP, as TF Serving's http_server.cc maps them.
HTTP_STATUS = {"CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
               "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
               "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409,
               "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503,
               "DATA_LOSS": 500, "UNAUTHENTICATED": 401}
CODE_NAMES = {getattr(tf.errors, name): name for name in HTTP_STATUS}
# tensorflow::DataTypeString, as it appears in TF Serving's messages.
TYPE_NAMES = {tf.float32: "float", tf.float64: "double", tf.int64: "int64", tf.int32: "int32"}


class Status(Exception):
    """A failed absl::Status: a canonical code name and TF Serving's message."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


class SavedModelRunner:
    """One version of a model, loaded and run as TF Serving runs it (see the module docstring)."""

    def __init__(self, export_dir):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(self.session, ["serve"],
                                                              str(export_dir))
        self.signatures = dict(meta_graph.signature_def)

    def predict(self, signature_name, inputs, output_filter=()):
        """Like predict_util.cc's RunPredict: `inputs` maps aliases to numpy arrays of any dtype
        (as a request's TensorProtos would decode); a dict of numpy arrays."""
        name = signature_name or "serving_default"
        if name not in self.signatures:
            raise Status("FAILED_PRECONDITION", f'Serving signature key "{name}" not found.')
        signature = self.signatures[name]
        expected = sorted(signature.inputs)
        if len(inputs) != len(expected):
            sent = sorted(inputs)
            raise Status("INVALID_ARGUMENT",
                         f"input size does not match signature: {len(sent)}!={len(expected)} "
                         f"len({{{','.join(sent)}}}) != len({{{','.join(expected)}}}). Sent extra: "
                         f"{{{','.join(sorted(set(sent) - set(expected)))}}}. Missing but required: "
                         f"{{{','.join(sorted(set(expected) - set(sent)))}}}.")
        feeds = {}
        for alias, info in signature.inputs.items():
            if alias not in inputs:
                raise Status("INVALID_ARGUMENT",
                             f"Signature input alias: {alias}(feed name: {info.name}) not found in "
                             f"request and no default value provided. Inputs expected to be in the "
                             f"request {{{','.join(sorted(inputs))}}}, or default input alias set: ")
            feeds[self.graph.get_tensor_by_name(info.name)._as_tf_output()] = inputs[alias]
        aliases = list(output_filter) or sorted(signature.outputs)
        for alias in aliases:
            if alias not in signature.outputs:
                raise Status("INVALID_ARGUMENT",
                             f"output tensor alias not found in signature: {alias} Outputs expected "
                             f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
        fetches = [self.graph.get_tensor_by_name(signature.outputs[a].name)._as_tf_output()
                   for a in aliases]
        try:
            # The session's raw run, as in C++: Session.run() in Python would first check shapes
            # and cast dtypes itself, which TF Serving does not.
            values = self.session._call_tf_sessionrun(None, feeds, fetches, [], None)
        except tf.errors.OpError as error:
            raise Status(CODE_NAMES.get(error.error_code, "UNKNOWN"), error.message) from None
        return dict(zip(aliases, values))

    def close(self):
        self.session.close()


class ModelRepository:
    """The models of a TF Serving models folder: `<name>/<version>/saved_model.pb`."""

    def __init__(self, models_dir):
        self.models = {}
        for model_dir in sorted(Path(models_dir).iterdir()):
            found = {int(v.name): v for v in model_dir.iterdir()
                     if v.name.isdigit() and (v / "saved_model.pb").exists()} \
                if model_dir.is_dir() else {}
            if found:
                self.models[model_dir.name] = {n: SavedModelRunner(p) for n, p in found.items()}

    def get(self, name, version=None):
        """(version, runner), or NOT_FOUND as TF Serving's manager reports it."""
        versions = self.models.get(name, {})
        if version is None and versions:
            return max(versions), versions[max(versions)]
        if version is not None and int(version) in versions:
            return int(version), versions[int(version)]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise Status("NOT_FOUND", f"Servable not found for request: {request}")

    def close(self):
        for versions in self.models.values():
            for runner in versions.values():
                runner.close()


# ---- JSON <-> tensors, after util/json_tensor.cc --------------------------------------------
def _json_type(value):
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _json_tensor(value, dtype):
    """A JSON value (nested lists) as an array of the signature's dtype, or INVALID_ARGUMENT."""
    shape, level = [], value
    while isinstance(level, list):  # the shape is read off the first elements (dense tensors)
        shape.append(len(level))
        level = level[0] if level else None
    flat = []

    def fill(item, depth):
        if not isinstance(item, list):
            if depth != len(shape):
                raise Status("INVALID_ARGUMENT",
                             f"JSON Value: {json.dumps(item)} found at incorrect level: {depth + 1} "
                             f"in the JSON DOM. Expected at level: {len(shape)}")
            number = isinstance(item, (int, float)) and not isinstance(item, bool)
            if not number or (dtype.is_integer and not isinstance(item, int)):
                raise Status("INVALID_ARGUMENT",
                             f"JSON Value: {json.dumps(item)} Type: {_json_type(item)} is not of "
                             f"expected type: {TYPE_NAMES.get(dtype, dtype.name)}")
            flat.append(item)
            return
        if depth >= len(shape):
            raise Status("INVALID_ARGUMENT",
                         f"Encountered list at unexpected level: {depth} expected < {len(shape)}")
        if len(item) != shape[depth]:
            raise Status("INVALID_ARGUMENT",
                         f"Encountered list at unexpected size: {len(item)} at level: {depth} "
                         f"expected size: {shape[depth]}")
        for element in item:
            fill(element, depth + 1)

    fill(value, 0)
    return np.array(flat, dtype=dtype.as_numpy_dtype).reshape(shape)


def inputs_from_json(body, signature_inputs):
    """FillPredictRequestFromJson: (inputs, "row" or "columnar") from a parsed request body."""
    dtypes = {alias: tf.dtypes.as_dtype(info.dtype) for alias, info in signature_inputs.items()}
    if "instances" in body and "inputs" in body:
        raise Status("INVALID_ARGUMENT", f"JSON Value: {json.dumps(body)[:200]} Not formatted "
                     f"correctly expecting only one of 'inputs' or 'instances' keys to exist ")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise Status("INVALID_ARGUMENT", f"JSON Value: {json.dumps(body)[:200]} Excepting "
                         f"'instances' to be an list/array")
        if not instances:
            raise Status("INVALID_ARGUMENT", f"JSON Value: {json.dumps(body)[:200]} No values in "
                         f"'instances' array")
        objects = isinstance(instances[0], dict)
        if not objects and len(dtypes) > 1:
            raise Status("INVALID_ARGUMENT", "instances is a plain list, but expecting list of "
                         "objects as multiple input tensors required as per tensorinfo_map")
        rows = {alias: [] for alias in dtypes}
        for index, instance in enumerate(instances):
            if objects != isinstance(instance, dict):
                raise Status("INVALID_ARGUMENT",
                             f"Expecting {'object' if objects else 'value/list'} but got "
                             f"{'list' if objects else 'object'} at item {index} of input list")
            named = instance if objects else {next(iter(dtypes)): instance}
            if set(named) != set(dtypes):
                raise Status("INVALID_ARGUMENT",
                             f"Failed to process element: {index} of 'instances' list. JSON "
                             f"object: {json.dumps(instance)[:200]} keys must be equal to: "
                             f"{','.join(sorted(dtypes))}")
            for alias, item in named.items():
                try:
                    rows[alias].append(_json_tensor(item, dtypes[alias]))
                except Status as error:
                    raise Status("INVALID_ARGUMENT",
                                 f"Failed to process element: {index} of 'instances' list. "
                                 f"Error: INVALID_ARGUMENT: {error.message}") from None
                first = rows[alias][0]
                if rows[alias][-1].shape != first.shape:
                    raise Status("INVALID_ARGUMENT",
                                 f"Expecting shape {list(first.shape)} but got: "
                                 f"{list(rows[alias][-1].shape)}".replace(" ", ""))
        return {alias: np.stack(values) for alias, values in rows.items()}, "row"
    if "inputs" in body:
        value = body["inputs"]
        if not isinstance(value, dict):
            if len(dtypes) > 1:
                raise Status("INVALID_ARGUMENT", "inputs is a plain value/list, but expecting an "
                             "object as multiple input tensors required as per tensorinfo_map")
            value = {next(iter(dtypes)): value}
        inputs = {}
        for alias, dtype in dtypes.items():
            if alias not in value:
                raise Status("INVALID_ARGUMENT", f"Missing named input: {alias} in 'inputs' object.")
            inputs[alias] = _json_tensor(value[alias], dtype)
        return inputs, "columnar"
    raise Status("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")


def json_from_outputs(outputs, format):
    """MakeJsonFromTensors: `predictions` (row) or `outputs` (columnar); a lone output unnamed."""
    if format == "columnar":
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}
    sizes = {name: value.shape[0] for name, value in outputs.items()}
    if len(set(sizes.values())) > 1:
        name, size = list(sizes.items())[-1]
        raise Status("INVALID_ARGUMENT", f"Tensor name: {name} has inconsistent batch size: "
                     f"{size} expecting: {list(sizes.values())[0]}")
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = next(iter(sizes.values()))
    return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()}
                            for i in range(count)]}


# ---- the REST server ---------------------------------------------------------------------------
PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:(classify|regress|predict)",
                          re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+))?(?:/(metadata))?",
                         re.IGNORECASE)


class RESTDouble:
    """TF Serving's REST API on 127.0.0.1 over a `ModelRepository` (a test double).

    `fail_next(count, status, message)` makes the next `count` requests fail with that HTTP
    status, and `delay` (seconds) slows every answer: for testing the clients' retries and
    timeouts. `requests` counts the requests received.
    """

    def __init__(self, models_dir):
        self.repository = ModelRepository(models_dir)
        self.delay, self.requests, self._faults = 0.0, 0, []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self.repository.close()

    def fail_next(self, count, status=503, message="the servable is being reloaded"):
        with self._lock:
            self._faults = [(status, message)] * count

    def handle(self, method, path, body):
        """(HTTP status, JSON answer) for one request."""
        with self._lock:
            self.requests += 1
            fault = self._faults.pop(0) if self._faults else None
        if fault:
            return fault[0], {"error": fault[1]}
        try:
            return 200, self._answer(method, path, body)
        except Status as error:
            return HTTP_STATUS.get(error.code, 500), {"error": error.message}

    def _answer(self, method, path, body):
        predict = PREDICT_PATH.fullmatch(path)
        status = STATUS_PATH.fullmatch(path)
        if method == "POST" and predict:
            name, version, verb = predict.groups()
            if verb.lower() != "predict":
                raise Status("UNIMPLEMENTED", f"{verb} is not implemented by this test double")
            return self._predict(name, version, body)
        if method == "GET" and status and status.group(1):
            name, version, metadata = status.groups()
            return self._metadata(name, version) if metadata else self._status(name, version)
        if method == "GET" and status:
            raise Status("INVALID_ARGUMENT", "Missing model name in request.")
        raise Status("INVALID_ARGUMENT", f"Malformed request: {method} {path}")

    def _predict(self, name, version, raw):
        try:
            body = json.loads(raw) if raw else None
        except ValueError as error:
            raise Status("INVALID_ARGUMENT", f"JSON Parse error: {error}") from None
        if body is None:
            raise Status("INVALID_ARGUMENT", "JSON Parse error: The document is empty")
        if not isinstance(body, dict):
            raise Status("INVALID_ARGUMENT", f"JSON Value: {json.dumps(body)[:200]} Is not object")
        signature_name = body.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise Status("INVALID_ARGUMENT", f"JSON Value: {json.dumps(body)[:200]} not formatted "
                         f"correctly. 'signature_name' key must be a string value.")
        _, runner = self.repository.get(name, version)
        key = signature_name or "serving_default"
        if key not in runner.signatures:  # HttpRestApiHandler::GetInfoMap
            raise Status("INVALID_ARGUMENT",
                         f'Serving signature name: "{key}" not found in signature def')
        inputs, format = inputs_from_json(body, runner.signatures[key].inputs)
        return json_from_outputs(runner.predict(key, inputs), format)

    def _status(self, name, version):
        versions = self.repository.models.get(name)
        if not versions:
            raise Status("NOT_FOUND", f"Could not find any versions of model {name}")
        chosen = sorted(versions) if version is None else [int(version)]
        if version is not None and int(version) not in versions:
            raise Status("NOT_FOUND", f"Could not find version {version} of model {name}")
        ok = {"error_code": "OK", "error_message": ""}
        return {"model_version_status": [{"version": str(v), "state": "AVAILABLE", "status": ok}
                                         for v in chosen]}

    def _metadata(self, name, version):
        from google.protobuf import json_format

        number, runner = self.repository.get(name, version)
        signatures = {key: json_format.MessageToDict(value, preserving_proto_field_name=True)
                      for key, value in runner.signatures.items()}
        return {"model_spec": {"name": name, "signature_name": "", "version": str(number)},
                "metadata": {"signature_def": {
                    "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
                    "signature_def": signatures}}}

    def _handler_class(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, method):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if not self.path.lower().startswith("/v1/"):
                    self.send_error(404)  # TF Serving's dispatcher ignores other paths
                    return
                status, answer = double.handle(method, self.path, body)
                if double.delay:
                    threading.Event().wait(double.delay)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def do_GET(self):
                self._reply("GET")

            def do_POST(self):
                self._reply("POST")

            def log_message(self, *args):
                pass

        return Handler


# ---- the gRPC server ---------------------------------------------------------------------------
class GRPCDouble:
    """TF Serving's gRPC PredictionService.Predict on 127.0.0.1 over a `ModelRepository` (a test
    double); needs grpcio and tensorflow-serving-api."""

    def __init__(self, models_dir):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self.repository = ModelRepository(models_dir)
        repository = self.repository

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                spec = request.model_spec
                try:
                    version, runner = repository.get(
                        spec.name, spec.version.value if spec.HasField("version") else None)
                    inputs = {}
                    for alias, proto in request.inputs.items():
                        try:
                            inputs[alias] = tf.make_ndarray(proto)
                        except Exception:
                            raise Status("INVALID_ARGUMENT", f"tensor parsing error: {alias}")
                    outputs = runner.predict(spec.signature_name, inputs, request.output_filter)
                except Status as error:
                    context.abort(getattr(grpc.StatusCode, error.code), error.message)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.signature_name = spec.signature_name or "serving_default"
                response.model_spec.version.value = version
                for alias, value in outputs.items():
                    response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
                return response

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self._server)
        self.target = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self):
        self._server.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._server.stop(grace=None).wait(10)
        self.repository.close()
