"""A TEST DOUBLE for TensorFlow Serving, for tests only: not a product server, never shipped.

No package registry carries the TF Serving binary, so the tests stand in for it with loopback
servers (127.0.0.1, an ephemeral port, a background thread, stopped at teardown) that run the
real SavedModel the way TF Serving does: through TensorFlow's session-based loader (tag
`serve`) and C++ `Session::Run` fed and fetched by the signature's tensor names, which is the
contract of TF Serving's `SavedModelBundle`. Around that run they follow TF Serving's own code
(model_servers/http_rest_api_handler.cc, util/json_tensor.cc, servables/tensorflow/
predict_util.cc, cc/saved_model/util.cc): the same URL patterns, JSON formats, checks, error
messages, status codes and `{"error": "..."}` bodies, so that the clients' handling of answers
and errors is tested against what the real server would say. Like the server, a double loads
only the versions its version policy serves (TF Serving's default: the latest).

With `batching=` (the text of a batching parameters file) a double batches as TF Serving's
BatchingSession over its shared batch scheduler does (tensorflow/core/kernels/batching_util/
shared_batch_scheduler.h, servables/tensorflow/batching_session.cc): a request larger than
max_batch_size is refused (INVALID_ARGUMENT "Task size N is larger than maximum input batch
size M"), a full queue answers UNAVAILABLE (HTTP 503), large requests are split across batches
when enable_large_batch_splitting is on, and concurrent requests are concatenated into one batch
before the model runs, so one malformed request fails the others of its batch. Simplifications:
one batch thread per signature (num_batch_threads is not modelled), no request deadlines, no
classify/regress.

    with RESTDouble(models_dir) as server:          # server.url == "http://127.0.0.1:<port>"
        RESTClient(server.url, "vae").encode(x)
    with GRPCDouble(models_dir) as server:          # needs grpcio and tensorflow-serving-api
        GRPCClient(server.target, "vae").encode(x)
    with RESTDouble(models_dir, batching=batching_parameters(8)) as server:
        with server.hold():                         # requests wait in the queue until the end
            ...
"""
import contextlib
import json
import re
import threading
import time
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


def served_versions(on_disk, policy):
    """The versions a ModelVersionPolicy serves: "latest" (TF Serving's default), "latest:N",
    "all", "specific:1,3" or a list of numbers."""
    if isinstance(policy, str):
        kind, _, argument = policy.partition(":")
    else:
        kind, argument = "specific", ",".join(str(v) for v in policy)
    if kind == "latest":
        return sorted(on_disk)[-int(argument or 1):]
    if kind == "all":
        return sorted(on_disk)
    if kind == "specific":
        return sorted(int(v) for v in argument.split(",") if int(v) in on_disk)
    raise ValueError(f"unknown version policy {policy!r}")


class ModelRepository:
    """The models of a TF Serving models folder (`<name>/<version>/saved_model.pb`), each with the
    versions its policy serves loaded; `version_policy` is one policy or a dict per model name."""

    def __init__(self, models_dir, version_policy="latest", batching=None):
        self.models = {}
        self.batching = BatchingParameters(batching) if batching else None
        self.released = threading.Event()
        self.released.set()
        self._queues, self._lock = {}, threading.Lock()
        for model_dir in sorted(Path(models_dir).iterdir()):
            found = {int(v.name): v for v in model_dir.iterdir()
                     if v.name.isdigit() and (v / "saved_model.pb").exists()} \
                if model_dir.is_dir() else {}
            policy = version_policy.get(model_dir.name, "latest") \
                if isinstance(version_policy, dict) else version_policy
            served = served_versions(found, policy)
            if served:
                self.models[model_dir.name] = {n: SavedModelRunner(found[n]) for n in served}

    def get(self, name, version=None):
        """(version, runner), or NOT_FOUND as TF Serving's manager reports it."""
        versions = self.models.get(name, {})
        if version is None and versions:
            return max(versions), versions[max(versions)]
        if version is not None and int(version) in versions:
            return int(version), versions[int(version)]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise Status("NOT_FOUND", f"Servable not found for request: {request}")

    def predict(self, name, version, signature_name, inputs, output_filter=()):
        """(version, outputs): through the batching queue of the signature when batching is on."""
        number, runner = self.get(name, version)
        key = signature_name or "serving_default"
        if self.batching is None or output_filter or key not in runner.signatures:
            return number, runner.predict(signature_name, inputs, output_filter)
        with self._lock:
            queue = self._queues.get((name, number, key))
            if queue is None:
                queue = self._queues[(name, number, key)] = BatchQueue(
                    self.batching, runner, key, self.released)
        return number, queue.run(inputs)

    def queued_tasks(self):
        """Requests waiting in the batching queues (for tests that hold the queues)."""
        with self._lock:
            queues = list(self._queues.values())
        return sum(queue.queued_tasks() for queue in queues)

    def close(self):
        with self._lock:
            queues = list(self._queues.values())
        self.released.set()
        for queue in queues:
            queue.close()
        for versions in self.models.values():
            for runner in versions.values():
                runner.close()


# ---- batching, after shared_batch_scheduler.h and batching_session.cc -------------------------
class BatchingParameters:
    """The fields of a BatchingParameters text (a `--batching_parameters_file`), with the
    scheduler's defaults for the fields left out."""

    def __init__(self, text):
        values = dict(re.findall(r"(\w+)\s*\{\s*value:\s*(\w+)\s*\}", text))
        known = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                 "num_batch_threads", "enable_large_batch_splitting", "max_execution_batch_size"}
        if set(values) - known:
            raise ValueError(f"this test double does not model {sorted(set(values) - known)}")
        self.max_batch_size = int(values.get("max_batch_size", 1000))
        self.batch_timeout_micros = int(values.get("batch_timeout_micros", 0))
        self.max_enqueued_batches = int(values.get("max_enqueued_batches", 10))
        self.splitting = values.get("enable_large_batch_splitting", "false").lower() == "true"
        # Without splitting a batch is at most max_batch_size (GetQueueOptions).
        self.max_execution_batch_size = int(values.get("max_execution_batch_size",
                                                       self.max_batch_size)) \
            if self.splitting else self.max_batch_size


class _Task:
    """One request in a queue; `pieces` are its (start, size) parts, each in some batch."""

    def __init__(self, inputs, size):
        self.inputs, self.size = inputs, size
        self.outputs, self.error, self.pending = {}, None, 0
        self.done = threading.Event()


class BatchQueue:
    """One batching queue (one signature of one version) and the thread that runs its batches."""

    def __init__(self, parameters, runner, signature_name, released):
        self.parameters, self.runner, self.signature_name = parameters, runner, signature_name
        self.released = released
        self.batches = [[]]  # of (task, start, size) pieces; the last batch is the open one
        self.open_since, self.closed = None, False
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def run(self, inputs):
        """Schedule a request, wait for its batch to run; its outputs, or its Status."""
        sizes = {alias: value.shape[0] if value.ndim else None for alias, value in inputs.items()}
        if None in sizes.values():
            raise Status("INVALID_ARGUMENT",
                         "Batching Run() input tensors must have at least one dimension")
        if len(set(sizes.values())) > 1:
            raise Status("INVALID_ARGUMENT",
                         "Batching Run() input tensors must have equal 0th-dimension size")
        task = _Task(inputs, next(iter(sizes.values())))
        if task.size == 0:  # nothing to batch
            return self.runner.predict(self.signature_name, inputs)
        with self.condition:
            self._schedule(task)
            self.condition.notify_all()
        task.done.wait()
        if task.error is not None:
            raise task.error
        return {alias: np.concatenate([part for _, part in sorted(parts)])
                for alias, parts in task.outputs.items()}

    def _open_size(self):
        return sum(size for _, _, size in self.batches[-1])

    def _start_new_batch(self):
        self.batches.append([])
        self.open_since = None

    def _add(self, piece):
        if not self.batches[-1]:
            self.open_since = time.monotonic()
        self.batches[-1].append(piece)
        piece[0].pending += 1

    def _schedule(self, task):
        p, size = self.parameters, task.size
        if size > p.max_batch_size:
            raise Status("INVALID_ARGUMENT", f"Task size {size} is larger than maximum input "
                         f"batch size {p.max_batch_size}")
        execution, open_size = p.max_execution_batch_size, self._open_size()
        if p.splitting:
            capacity = (p.max_enqueued_batches - len(self.batches)) * execution + \
                (execution - open_size)
            if size > capacity:
                raise Status("UNAVAILABLE",
                             f"The batch scheduling queue to which this task was submitted is "
                             f"full; task size is {size} but scheduling capacity is only "
                             f"{capacity} (num_enqueued_batches={len(self.batches)}, "
                             f"max_enqueued_batches={p.max_enqueued_batches}, open_batch_size="
                             f"{open_size}, max_execution_batch_size={execution})")
            start = 0
            while start < size:  # fill the open batch, then new ones of max_execution_batch_size
                room = execution - self._open_size()
                if room == 0:
                    self._start_new_batch()
                    room = execution
                step = min(room, size - start)
                self._add((task, start, step))
                start += step
            return
        if open_size + size > p.max_batch_size:
            if len(self.batches) >= p.max_enqueued_batches:
                raise Status("UNAVAILABLE",
                             f"The batch scheduling queue to which this task was submitted is "
                             f"full; currently {len(self.batches)} batches enqueued and "
                             f"max_enqueued_batches is {p.max_enqueued_batches}")
            self._start_new_batch()
        self._add((task, 0, size))

    def queued_tasks(self):
        with self.condition:
            return len({id(task) for batch in self.batches for task, _, _ in batch})

    def _next_batch(self):
        """The batch to run now, or None: a closed one, else the open one once full or timed
        out."""
        if not self.released.is_set():
            return None
        if len(self.batches) > 1:
            return self.batches.pop(0)
        timeout = self.parameters.batch_timeout_micros / 1e6
        if self.batches[-1] and (self.closed or
                                 self._open_size() >= self.parameters.max_execution_batch_size or
                                 time.monotonic() >= self.open_since + timeout):
            batch, self.batches = self.batches[-1], [[]]
            self.open_since = None
            return batch
        return None

    def _work(self):
        while True:
            with self.condition:
                batch = self._next_batch()
                while batch is None:
                    if self.closed and not any(self.batches):
                        return
                    self.condition.wait(timeout=0.001)
                    batch = self._next_batch()
            self._process(batch)

    def _process(self, batch):
        signature = self.runner.signatures[self.signature_name]
        try:
            merged = {}
            for alias, info in signature.inputs.items():
                parts = [task.inputs[alias][start:start + size] for task, start, size in batch]
                if any(part.shape[1:] != parts[0].shape[1:] for part in parts):
                    # batching_session.cc's MergeInputTensors, its words run together as there.
                    raise Status("FAILED_PRECONDITION",
                                 f"Tensors with name '{info.name}' from different tasks have "
                                 f"different shapes and padding is turned off.Set "
                                 f"pad_variable_length_inputs to true, or ensure that all tensors "
                                 f"with the same namehave equal dimensions starting with the "
                                 f"first dim.")
                if any(part.dtype != parts[0].dtype for part in parts):
                    names = [TYPE_NAMES.get(tf.as_dtype(part.dtype), part.dtype.name)
                             for part in parts]
                    other = next(n for n in names if n != names[0])
                    raise Status("INTERNAL", f"Tensor concat operation failed: INVALID_ARGUMENT: "
                                 f"Cannot concatenate tensors that have different data types. "
                                 f"Got {names[0]} and {other}.")
                merged[alias] = np.concatenate(parts)
            outputs = self.runner.predict(self.signature_name, merged)
            total = sum(size for _, _, size in batch)
            if any(value.ndim == 0 or value.shape[0] != total for value in outputs.values()):
                raise Status("INTERNAL", "Batched output tensor's 0th dimension does not equal "
                             "the sum of the 0th dimension sizes of the input tensors")
            offset = 0
            for task, start, size in batch:
                for alias, value in outputs.items():
                    task.outputs.setdefault(alias, []).append((start, value[offset:offset + size]))
                offset += size
        except Status as error:
            for task, _, _ in batch:
                task.error = error
        except Exception as error:  # a bug here must fail the requests, not hang them
            for task, _, _ in batch:
                task.error = Status("INTERNAL", f"{type(error).__name__}: {error}")
        for task, _, _ in batch:
            task.pending -= 1
            if task.pending == 0:
                task.done.set()

    def close(self):
        with self.condition:
            self.closed = True
            self.condition.notify_all()
        self.thread.join(timeout=10)


# ---- JSON <-> tensors, after util/json_tensor.cc --------------------------------------------
def _shape(shape):
    """ShapeToString: [2,3]."""
    return "[" + ",".join(str(d) for d in shape) + "]"


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

        def add_item(item, alias):  # AddInstanceItem
            if alias not in dtypes:
                raise Status("INVALID_ARGUMENT",
                             f"JSON object: does not have named input: {alias}")
            value = _json_tensor(item, dtypes[alias])
            if rows[alias]:
                first = rows[alias][0]
                if value.size != first.size:
                    raise Status("INVALID_ARGUMENT", f"Expecting tensor size: {first.size} but "
                                 f"got: {value.size}")
                if value.shape != first.shape:
                    raise Status("INVALID_ARGUMENT",
                                 f"Expecting shape {_shape(first.shape)} but got: "
                                 f"{_shape(value.shape)}")
            rows[alias].append(value)

        for index, instance in enumerate(instances):
            if objects:
                if not isinstance(instance, dict):
                    raise Status("INVALID_ARGUMENT", f"Expecting object but got list at item "
                                 f"{index} of input list")
                for alias, item in instance.items():
                    try:
                        add_item(item, alias)
                    except Status as error:
                        raise Status("INVALID_ARGUMENT",
                                     f"Failed to process element: {index} key: {alias} of "
                                     f"'instances' list. Error: {error.code}: "
                                     f"{error.message}") from None
                if set(instance) != set(dtypes):
                    raise Status("INVALID_ARGUMENT",
                                 f"Failed to process element: {index} of 'instances' list. JSON "
                                 f"object: {json.dumps(instance)[:200]} must only have keys: "
                                 f"{','.join(sorted(dtypes))}")
            else:
                if isinstance(instance, dict):
                    raise Status("INVALID_ARGUMENT", f"Expecting value/list but got object at "
                                 f"item {index} of input list")
                try:
                    add_item(instance, next(iter(dtypes)))
                except Status as error:
                    raise Status("INVALID_ARGUMENT",
                                 f"Failed to process element: {index} of 'instances' list. "
                                 f"Error: {error.code}: {error.message}") from None
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


class _Holding:
    """hold() and wait_queued() for a double over `self.repository`."""

    @contextlib.contextmanager
    def hold(self):
        """Keep the batching queues from running batches until the block ends, so that requests
        sent meanwhile are queued (and merged) as under load."""
        self.repository.released.clear()
        try:
            yield self
        finally:
            self.repository.released.set()

    def wait_queued(self, count, timeout=30):
        """Wait until `count` requests wait in the batching queues."""
        deadline = time.monotonic() + timeout
        while self.repository.queued_tasks() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.repository.queued_tasks()} requests queued, not {count}")
            time.sleep(0.005)



class RESTDouble(_Holding):
    """TF Serving's REST API on 127.0.0.1 over a `ModelRepository` (a test double).

    `version_policy` and `batching` are as for `ModelRepository`. `fail_next(count, status,
    message)` makes the next `count` requests fail with that HTTP status, and `delay` (seconds)
    slows every answer: for testing the clients' retries and timeouts. `requests` counts the
    requests received, `batch_sizes` the examples in each predict request.
    """

    def __init__(self, models_dir, version_policy="latest", batching=None):
        self.repository = ModelRepository(models_dir, version_policy, batching)
        self.batch_sizes = []
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
        with self._lock:
            self.batch_sizes.append(max((len(v) for v in inputs.values() if v.ndim), default=0))
        _, outputs = self.repository.predict(name, version, key, inputs)
        return json_from_outputs(outputs, format)

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
        # The server writes the SignatureDefMap itself, not the Any around it: no "@type".
        return {"model_spec": {"name": name, "signature_name": "", "version": str(number)},
                "metadata": {"signature_def": {"signature_def": signatures}}}

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
class GRPCDouble(_Holding):
    """TF Serving's gRPC PredictionService (Predict, GetModelMetadata) on 127.0.0.1 over a
    `ModelRepository` (a test double); needs grpcio and tensorflow-serving-api."""

    def __init__(self, models_dir, version_policy="latest", batching=None):
        import grpc
        from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                             prediction_service_pb2_grpc)

        self.repository = ModelRepository(models_dir, version_policy, batching)
        repository = self.repository

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                spec = request.model_spec
                try:
                    version = spec.version.value if spec.HasField("version") else None
                    repository.get(spec.name, version)
                    inputs = {}
                    for alias, proto in request.inputs.items():
                        try:
                            inputs[alias] = tf.make_ndarray(proto)
                        except Exception:
                            raise Status("INVALID_ARGUMENT", f"tensor parsing error: {alias}")
                    version, outputs = repository.predict(spec.name, version, spec.signature_name,
                                                          inputs, request.output_filter)
                except Status as error:
                    context.abort(getattr(grpc.StatusCode, error.code), error.message)
                response = predict_pb2.PredictResponse()
                response.model_spec.name = spec.name
                response.model_spec.signature_name = spec.signature_name or "serving_default"
                response.model_spec.version.value = version
                for alias, value in outputs.items():
                    response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
                return response

            def GetModelMetadata(self, request, context):  # get_model_metadata_impl.cc
                spec = request.model_spec
                try:
                    if not request.metadata_field:
                        raise Status("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at "
                                     "least one metadata_field")
                    for field in request.metadata_field:
                        if field != "signature_def":
                            raise Status("INVALID_ARGUMENT",
                                         f"Metadata field {field} is not supported")
                    version, runner = repository.get(
                        spec.name, spec.version.value if spec.HasField("version") else None)
                except Status as error:
                    context.abort(getattr(grpc.StatusCode, error.code), error.message)
                definitions = get_model_metadata_pb2.SignatureDefMap()
                for key, value in runner.signatures.items():
                    definitions.signature_def[key].CopyFrom(value)
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                response.model_spec.name = spec.name
                response.model_spec.version.value = version
                response.metadata["signature_def"].Pack(definitions)
                return response

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
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
