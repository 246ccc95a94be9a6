"""Serve tfvae exports with TensorFlow Serving: its config files, warm-up requests and clients.

    # the server side: what `tfvae serving-config saved_models/` writes; base_path is where
    # saved_models/ is inside the server (the container), an absolute path or URI
    text = serving_config("saved_models", version_policy="latest:2", base_path="/models")
    Path("saved_models/models.config").write_text(text)
    Path("saved_models/batching.config").write_text(batching_parameters())

    # the client side: TF Serving's REST API (port 8501) or gRPC API (port 8500)
    client = RESTClient("http://localhost:8501", "vae_mnist")
    z = client.encode(images)["mean"]
    images = GRPCClient("localhost:8500", "vae_mnist").sample([0, 1, 2])["x"]

    # what TF Serving sees of an export: its SignatureDefs, by name
    signature_defs("saved_models/vae_mnist/1")["sample"]

Every export carries `assets.extra/tf_serving_warmup_requests` (see `tfvae.warmup`), one
request per signature that TF Serving replays when it loads a version, so that the first real
request is not slow. The signatures themselves are described in `tfvae.signatures`.

Before sending, the clients check each input against the signature's metadata (read once from
the server), cast what loses nothing (float64 images to float32) and split a batch larger than
`max_request_size` into several requests, so that a caller's mistake is refused here and never
joins other callers' requests in one of the server's merged batches.

Only TensorFlow, numpy and the standard library are imported here, so a client needs neither
TensorFlow Probability nor tf_keras; gRPC and the `tensorflow-serving-api` protos are imported
when a gRPC client is made (`pip install tfvae[serving]`). The REST client uses urllib.
"""
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.exporting import versions
from tfvae import validation
from tfvae.signatures import SignatureMethods, get, input_names, lone_output, names
# Part of this module's API (colab/3_serving.ipynb lists an export's signatures with it).
from tfvae.signatures import signature_defs  # noqa: F401

# Worth another try after a pause: the server is restarting, its batching queue is full
# (UNAVAILABLE: HTTP 503), or an answer came too late (DEADLINE_EXCEEDED: HTTP 504). Any other
# error would come back the same.
_RETRY_HTTP = {503, 504}
_RETRY_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED"}
# TF Serving's batching answers RESOURCE_EXHAUSTED (HTTP 429) for a request whose deadline passed
# while it waited in the queue: a deadline expiry, so retried; other RESOURCE_EXHAUSTED errors
# (out of memory) are not.
_QUEUE_DEADLINE = "timeout exceeded while waiting in batching queue"
# A server whose batching refuses requests larger than its max_batch_size says so: the clients
# then send smaller ones.
_TASK_TOO_LARGE = re.compile(r"Task size (\d+) is larger than maximum input batch size (\d+)")


# ---- server configuration ---------------------------------------------------------------------
def serving_config(models_dir, version_policy="latest", base_path="/models"):
    """The text of a TF Serving `--model_config_file`: a `model_config_list` with one entry per
    model folder of `models_dir` (a folder holding numbered versions with a saved_model.pb).

    Args:
        models_dir: e.g. "saved_models"; folders without a version are left out.
        version_policy: which versions TF Serving loads: "latest" (the newest), "latest:N" (the N
            newest), "all", "specific:1,3" or a list of version numbers; or a dict from model
            name to one of these (models not in it get "latest").
        base_path: where `models_dir` is inside the server (the container), an absolute path
            ("/models") or a URI ("gs://bucket/models"); a model's base_path is
            `<base_path>/<name>`. TF Serving refuses a relative one at start-up.

    Example:
        Path("saved_models/models.config").write_text(serving_config("saved_models", "latest:2"))
    """
    check_base_path(base_path)
    models_dir = Path(models_dir)
    models = sorted(p for p in models_dir.iterdir() if p.is_dir() and _served_versions(p)) \
        if models_dir.is_dir() else []
    if not models:
        raise FileNotFoundError(f"{models_dir} holds no model folder with a numbered version "
                                f"(e.g. {models_dir}/vae_mnist/1/saved_model.pb)")
    policies = version_policy if isinstance(version_policy, dict) else None
    unknown = set(policies or ()) - {p.name for p in models}
    if unknown:
        raise ValueError(f"version_policy names models not in {models_dir}: {sorted(unknown)}")
    lines = ["model_config_list {"]
    for model in models:
        policy = version_policy if policies is None else policies.get(model.name, "latest")
        lines += ["  config {",
                  f"    name: {_quote(model.name)}",
                  f"    base_path: {_quote(base_path.rstrip('/') + '/' + model.name)}",
                  '    model_platform: "tensorflow"',
                  f"    model_version_policy {{ {_policy_text(policy, model)} }}",
                  "  }"]
    return "\n".join(lines + ["}"]) + "\n"


def check_base_path(base_path):
    """ValueError unless `base_path` is an absolute path or a URI, as TF Serving's config
    validation requires (it stops at start-up with "Expected model NAME to have an absolute path
    or URI; got base_path()=...")."""
    text = str(base_path)
    if not (text.startswith("/") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text)):
        raise ValueError(
            f"base path {text!r} is relative, but TF Serving requires an absolute path or URI "
            f"and refuses a relative base_path at start-up; give where the models folder is "
            f"inside the server, e.g. /models (the container path docs/docker-compose.yml "
            f"mounts saved_models/ on) or gs://bucket/models")


def _served_versions(model_dir):
    return [v for v in versions(model_dir) if (model_dir / str(v) / "saved_model.pb").exists()]


def _policy_text(policy, model_dir):
    """One ModelVersionPolicy in text format, checked against the versions on disk."""
    if isinstance(policy, str):
        kind, _, argument = policy.partition(":")
    else:
        kind, argument = "specific", ",".join(str(v) for v in policy)
    if kind == "latest" and re.fullmatch(r"[1-9]\d*|", argument):
        return f"latest {{ num_versions: {int(argument or 1)} }}"
    if kind == "all" and not argument:
        return "all {}"
    if kind == "specific" and re.fullmatch(r"\d+(,\d+)*", argument):
        numbers = [int(v) for v in argument.split(",")]
        missing = sorted(set(numbers) - set(_served_versions(model_dir)))
        if missing:
            raise ValueError(f"version_policy {policy!r}: {model_dir} has no version {missing}; "
                             f"it has {_served_versions(model_dir)}")
        return "specific { " + " ".join(f"versions: {v}" for v in numbers) + " }"
    raise ValueError(f"version_policy {policy!r} for {model_dir.name}: use 'latest', 'latest:N' "
                     f"(N >= 1), 'all', 'specific:1,3' or a list of version numbers")


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def batching_parameters(max_batch_size=256, batch_timeout_micros=0, num_batch_threads=None,
                        max_enqueued_batches=100, max_execution_batch_size=None,
                        enable_large_batch_splitting=True):
    """The text of a TF Serving `--batching_parameters_file` (a BatchingParameters message) for
    these models on CPU: small dense networks, where one batch of 256 costs far less than 256
    single requests (bench/serving.py measures it), so merging concurrent requests pays.

    Args:
        max_batch_size: the largest request (in examples) the server accepts: a larger one gets
            INVALID_ARGUMENT "Task size N is larger than maximum input batch size M". The clients
            split their requests at 256 examples by default (`max_request_size`) and follow a
            smaller limit when the server names one.
        batch_timeout_micros: how long a request may wait for others to join its batch. 0 is TF
            Serving's batching guide's starting point on CPU (then try 1-10 ms, keeping in mind
            that 0 may be best).
        num_batch_threads: threads that run batches; by default the number of CPU cores of the
            machine that runs this function, so run it on (or pass the cores of) the server.
        max_enqueued_batches: the queue bound: beyond it TF Serving answers UNAVAILABLE (HTTP
            503) at once instead of letting latency grow; the clients retry those.
        max_execution_batch_size: the largest merged batch the model runs (default:
            max_batch_size; at most max_batch_size). With splitting on, a request may be larger
            than this and is run in pieces.
        enable_large_batch_splitting: let the server split a request across batches, so that it
            fills the open batch instead of closing it early.

    The inputs have fixed shapes, so no padding (pad_variable_length_inputs) is needed, and on
    CPU `allowed_batch_sizes` would only add padding work, so it is left out.
    """
    num_batch_threads = num_batch_threads or os.cpu_count() or 1
    if max_execution_batch_size is None:
        max_execution_batch_size = max_batch_size
    values = {"max_batch_size": max_batch_size, "batch_timeout_micros": batch_timeout_micros,
              "max_enqueued_batches": max_enqueued_batches, "num_batch_threads": num_batch_threads,
              "max_execution_batch_size": max_execution_batch_size}
    for key, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < (0 if "micros" in key else 1):
            kind = "a non-negative" if "micros" in key else "a positive"
            raise ValueError(f"{key}={value!r} must be {kind} integer")
    if max_execution_batch_size > max_batch_size:
        raise ValueError(f"max_execution_batch_size={max_execution_batch_size} must be at most "
                         f"max_batch_size={max_batch_size} (the largest request TF Serving "
                         f"accepts); raise max_batch_size or lower max_execution_batch_size")
    if not isinstance(enable_large_batch_splitting, bool):
        raise ValueError(f"enable_large_batch_splitting={enable_large_batch_splitting!r} must be "
                         f"True or False")
    if not enable_large_batch_splitting and max_execution_batch_size != max_batch_size:
        raise ValueError("max_execution_batch_size only applies with enable_large_batch_splitting"
                         "=True; without splitting every batch is at most max_batch_size")
    execution = values.pop("max_execution_batch_size")
    text = "".join(f"{key} {{ value: {int(value)} }}\n" for key, value in values.items())
    if enable_large_batch_splitting:
        text += ("enable_large_batch_splitting { value: true }\n"
                 f"max_execution_batch_size {{ value: {int(execution)} }}\n")
    return text


# ---- clients ----------------------------------------------------------------------------------
class ServingError(RuntimeError):
    """TF Serving answered with an error, or could not be reached.

    Attributes:
        status: the HTTP status (REST) or the gRPC status code name, e.g. "INVALID_ARGUMENT";
            None when no answer came.
        server_message: TF Serving's own message (its JSON "error" or the gRPC details).
    """

    def __init__(self, message, status=None, server_message=None):
        super().__init__(message)
        self.status, self.server_message = status, server_message


class ServingTimeout(ServingError):
    """No answer within the timeout, on every try."""


class _Client(SignatureMethods):
    """What both clients share: the tfvae signatures on top of `predict`, the inputs checked
    against the signature's metadata, large requests split, and retries."""

    def __init__(self, model, version, timeout, retries, backoff, max_request_size, validate):
        self.model, self.version = model, (None if version is None else int(version))
        self.timeout, self.retries, self.backoff = timeout, int(retries), backoff
        if max_request_size is not None and (isinstance(max_request_size, bool)
                                             or int(max_request_size) != max_request_size
                                             or max_request_size < 1):
            raise ValueError(f"max_request_size={max_request_size!r} must be a positive integer "
                             f"or None (never split)")
        self.max_request_size = None if max_request_size is None else int(max_request_size)
        self.validate = bool(validate)
        self.attempts = 0  # requests sent, tries included (for monitoring and tests)
        self._definitions = None  # the served version's SignatureDefs, read once

    def _run_signature(self, name, inputs):
        if not self.validate:  # what loses nothing is still cast; the server checks the rest
            dtypes = {i.name: np.dtype(i.dtype) for i in get(name).inputs}
            arrays = {key: validation.as_array(value) for key, value in inputs.items()}
            inputs = {key: _cast_if_lossless(array, dtypes.get(key, array.dtype))
                      for key, array in arrays.items()}
        if self.validate and name in self.signature_defs():   # an export from before seeds
            taken = self.signature_defs()[name].inputs
            inputs = {key: value for key, value in inputs.items()
                      if key in taken or key not in ("seed", "k")}
        return self.predict(name, inputs)

    def _where(self, signature):
        version = "" if self.version is None else f" version {self.version}"
        return f"model {self.model!r}{version}, signature {signature!r}"

    def signature_defs(self):
        """The served version's SignatureDefs by name (protos), read from the server once."""
        if self._definitions is None:
            self._definitions = self._read_signature_defs()
        return self._definitions

    def _checked(self, signature, inputs):
        """`inputs` as a dict of arrays that the signature accepts, cast where nothing is lost;
        ValueError (nothing sent) for anything the server would refuse."""
        definitions = self.signature_defs()
        if signature not in definitions:
            raise ValueError(f"{self._where(signature)}: the model has no such signature; it has "
                             f"{sorted(definitions)}")
        expected = definitions[signature].inputs
        inputs = validation.by_input_name(inputs, expected, self._where(signature))
        checked = {alias: _conform(inputs[alias], info, self._where(signature), alias)
                   for alias, info in expected.items()}
        validation.check_same_rows(checked, self._where(signature))
        return checked

    def _splittable(self, signature):
        """Whether the answers to parts of a batch concatenate into the answer to the whole:
        every output is batch-major (known from the metadata, or tfvae's contract)."""
        if self._definitions is not None and signature in self._definitions:
            return all(not o.tensor_shape.unknown_rank and o.tensor_shape.dim
                       and o.tensor_shape.dim[0].size == -1
                       for o in self._definitions[signature].outputs.values())
        return signature in names()

    def _in_parts(self, signature, inputs, send):
        """`send(inputs)`, in parts of at most max_request_size examples (order kept) when the
        batch is larger: TF Serving's batching refuses a request larger than its max_batch_size.
        A server that names a smaller limit in that refusal is followed from then on."""
        arrays = {name: validation.as_array(value) for name, value in inputs.items()} \
            if isinstance(inputs, dict) else None
        sizes = {len(a) if a.ndim else None for a in arrays.values()} if arrays else {None}
        size = next(iter(sizes)) if len(sizes) == 1 else None
        if size is None or not self._splittable(signature):
            return send(inputs)
        parts, start = [], 0
        while True:
            step = size - start if self.max_request_size is None else \
                min(self.max_request_size, size - start)
            part = arrays if step == size else \
                {name: a[start:start + step] for name, a in arrays.items()}
            try:
                parts.append(send(part))
            except ServingError as error:
                limit = _TASK_TOO_LARGE.search(error.server_message or "")
                if limit and 1 <= int(limit.group(2)) < step:
                    self.max_request_size = int(limit.group(2))
                    continue
                raise
            start += step
            if start >= size:
                break
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _with_retries(self, send, retryable):
        """Call `send()`; on a retryable failure wait backoff, 2 backoff, ... and try again."""
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                return send()
            except ServingError as error:
                if attempt == self.retries or not retryable(error):
                    raise
            time.sleep(self.backoff * 2 ** attempt)


def _cast_if_lossless(array, dtype):
    cast = validation.lossless_cast(array, dtype)
    return array if cast is None else cast


def _conform(value, info, where, name):
    """`value` as an array that the TensorInfo `info` accepts (validation.conform)."""
    dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
    shape = None if info.tensor_shape.unknown_rank else [
        None if d.size == -1 else d.size for d in info.tensor_shape.dim]
    return validation.conform(value, shape, dtype, where, name)


def rest_request_body(signature, inputs, format="columnar"):
    """The JSON body (a dict) of a TF Serving REST predict request; both formats are batch-major.

    format="columnar": `{"signature_name": s, "inputs": {name: nested list, ...}}`, or
    `"inputs": nested list` when `inputs` is a lone array (a one-input signature);
    format="row": `{"signature_name": s, "instances": [...]}`, one entry per example: the value
    itself for a lone array or a one-entry dict, else an object of named values.
    """
    if format not in ("columnar", "row"):
        raise ValueError(f"format={format!r} must be 'columnar' or 'row'")
    if not isinstance(inputs, dict):
        key = "inputs" if format == "columnar" else "instances"
        return {"signature_name": signature, key: validation.as_array(inputs).tolist()}
    inputs = {name: validation.as_array(value) for name, value in inputs.items()}
    if format == "columnar":
        return {"signature_name": signature,
                "inputs": {name: value.tolist() for name, value in inputs.items()}}
    if len(inputs) == 1:
        return {"signature_name": signature, "instances": next(iter(inputs.values())).tolist()}
    sizes = {name: len(value) for name, value in inputs.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the row format needs one batch size for every input; got {sizes}")
    instances = [{name: value[i].tolist() for name, value in inputs.items()}
                 for i in range(len(next(iter(inputs.values()))))]
    return {"signature_name": signature, "instances": instances}


def outputs_from_rest(body, lone_output="x"):
    """A REST predict response (`predictions` or `outputs`) as a dict of numpy arrays; TF Serving
    leaves out the name of a lone output, which is then `lone_output`."""
    if "predictions" in body:
        rows = body["predictions"]
        if rows and isinstance(rows[0], dict):
            outputs = {name: [row[name] for row in rows] for name in rows[0]}
        else:
            outputs = {lone_output: rows}
    elif "outputs" in body:
        outputs = body["outputs"]
        if not isinstance(outputs, dict):
            outputs = {lone_output: outputs}
    else:
        raise ServingError(f"TF Serving's answer has neither 'predictions' nor 'outputs': "
                           f"{str(body)[:300]}")
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    # JSON has no float32: the server wrote float32 values, read them back as float32.
    return {name: a.astype(np.float32) if a.dtype.kind == "f" else a for name, a in arrays.items()}


class RESTClient(_Client):
    """Calls a model on TF Serving's REST API (`POST /v1/models/<model>[/versions/<v>]:predict`).

    Args:
        url: the server, e.g. "http://localhost:8501".
        model: the model's name in TF Serving (its folder name under saved_models/).
        version: a version number; None for the server's latest.
        format: "columnar" (`inputs`/`outputs`, the default) or "row" (`instances`/`predictions`).
        timeout: seconds to wait for each answer.
        retries: how many times to try again when the server is unavailable (no connection,
            HTTP 503: restarting, or its batching queue full) or a deadline passed (a timeout,
            HTTP 504, or HTTP 429 for a request whose deadline expired in the batching queue);
            any other error would come back the same and is raised at once.
        backoff: seconds before the first retry, doubled for each next one.
        max_request_size: the most examples sent in one request: a larger batch goes as several
            requests, answers concatenated in order (None: never split). 256 matches
            `batching_parameters()`; a server that refuses a smaller size is followed.
        validate: check each input against the signature's metadata (read from the server once)
            before sending, casting what loses nothing; a mismatch raises ValueError and nothing
            is sent. With batching, the server merges requests before running the model, so a
            malformed one that reached it could fail other callers' requests too.

    `encode`, `decode`, `sample`, `reconstruct` and `score` return dicts of numpy arrays, as
    `tfvae.load` does; errors raise `ServingError` with TF Serving's message.

    Example:
        client = RESTClient("http://localhost:8501", "vae_mnist")
        codes = client.encode(images)["mean"]
    """

    def __init__(self, url, model, version=None, *, format="columnar", timeout=10.0, retries=2,
                 backoff=0.25, max_request_size=256, validate=True):
        super().__init__(model, version, timeout, retries, backoff, max_request_size, validate)
        if format not in ("columnar", "row"):
            raise ValueError(f"format={format!r} must be 'columnar' or 'row'")
        self.url, self.format = url.rstrip("/"), format
        self._output_names = {}

    def __repr__(self):
        return f"<RESTClient {self.model_url}>"

    @property
    def model_url(self):
        version = "" if self.version is None else f"/versions/{self.version}"
        return f"{self.url}/v1/models/{self.model}{version}"

    def predict(self, signature, inputs, format=None, *, validate=None):
        """Run `signature` on `inputs` (a dict of arrays, or the array of a one-input signature);
        a dict of numpy arrays. `validate` (default: the client's) checks and casts the inputs
        first; validate=False sends them as they are."""
        if self.validate if validate is None else validate:
            inputs = self._checked(signature, inputs)

        def send(part):
            body = rest_request_body(signature, part, format or self.format)
            answer = self._request("POST", f"{self.model_url}:predict", body, signature)
            if "predictions" in answer:
                named = bool(answer["predictions"]) and isinstance(answer["predictions"][0], dict)
            else:
                named = isinstance(answer.get("outputs"), dict)
            return outputs_from_rest(answer, None if named else self._output_name(signature))

        return self._in_parts(signature, inputs, send)

    def _output_name(self, signature):
        """The name of a one-output signature's output, which TF Serving's JSON leaves out: known
        for tfvae's signatures, else read once from the model's metadata."""
        if signature not in self._output_names:
            if lone_output(signature) is not None:
                self._output_names[signature] = lone_output(signature)
            else:
                definition = self.signature_defs().get(signature)
                outputs = list(definition.outputs) if definition is not None else []
                self._output_names[signature] = outputs[0] if outputs else "output"
        return self._output_names[signature]

    def _read_signature_defs(self):
        from google.protobuf import json_format
        from tensorflow.core.protobuf import meta_graph_pb2

        metadata = self.metadata().get("metadata", {}).get("signature_def", {})
        return {name: json_format.ParseDict(definition, meta_graph_pb2.SignatureDef(),
                                            ignore_unknown_fields=True)
                for name, definition in metadata.get("signature_def", {}).items()
                if not name.startswith("__")}

    def status(self):
        """TF Serving's model status: `{"model_version_status": [{"version", "state", ...}]}`."""
        return self._request("GET", self.model_url, None, None)

    def metadata(self):
        """TF Serving's model metadata, with the signature definitions."""
        return self._request("GET", f"{self.model_url}/metadata", None, None)

    def _request(self, method, url, body, signature):
        data = None if body is None else json.dumps(body).encode()
        where = self._where(signature) if signature else f"model {self.model!r}"

        def send():
            request = urllib.request.Request(url, data=data, method=method,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                message = _error_message(error.read())
                raise ServingError(f"TF Serving refused {where} with HTTP {error.code}: {message}",
                                   status=error.code, server_message=message) from None
            except (TimeoutError, socket.timeout) as error:
                raise ServingTimeout(f"no answer from {self.url} for {where} within "
                                     f"{self.timeout} s") from error
            except urllib.error.URLError as error:
                if isinstance(error.reason, (TimeoutError, socket.timeout)):
                    raise ServingTimeout(f"no answer from {self.url} for {where} within "
                                         f"{self.timeout} s") from error
                raise ServingError(f"could not reach TF Serving at {self.url} for {where}: "
                                   f"{error.reason}") from error
            except (ConnectionError, http.client.HTTPException) as error:
                raise ServingError(f"TF Serving at {self.url} dropped the connection for {where}: "
                                   f"{type(error).__name__}: {error}") from error

        return self._with_retries(send, lambda e: e.status is None or e.status in _RETRY_HTTP or (
            e.status == 429 and _QUEUE_DEADLINE in (e.server_message or "")))


def _error_message(raw):
    """TF Serving's `{"error": "..."}`, or the raw text of some other server's answer."""
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return text.strip()[:1000] or "(empty answer)"


def grpc_request(model, signature, inputs, version=None):
    """A `tensorflow.serving.PredictRequest` for `signature` of `model` (TensorProtos made with
    tf.make_tensor_proto from the arrays as they are)."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    if not isinstance(inputs, dict):
        if input_names(signature) is None or len(input_names(signature)) != 1:
            raise ValueError(f"gRPC needs named inputs: pass {{name: array}} for {signature!r}")
        inputs = {input_names(signature)[0]: inputs}
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(validation.as_array(value)))
    return request


class GRPCClient(_Client):
    """Calls a model on TF Serving's gRPC API (PredictionService.Predict, port 8500 by default).

    Args:
        target: the server, e.g. "localhost:8500".
        model, version, timeout, retries, backoff, max_request_size, validate: as for
            `RESTClient`; gRPC UNAVAILABLE and DEADLINE_EXCEEDED are tried again, and
            RESOURCE_EXHAUSTED when TF Serving's batching says the deadline passed in its queue.
        channel: a ready grpc.Channel (e.g. a secure one) instead of an insecure one to target.
        max_message_bytes: the largest request or answer (gRPC's default is 4 MiB, about 1,300
            MNIST images; 256 images are 0.8 MiB).

    Needs `pip install tfvae[serving]` (grpcio and tensorflow-serving-api).

    Example:
        with GRPCClient("localhost:8500", "vae_mnist") as client:
            images = client.sample(16)["x"]
    """

    def __init__(self, target, model, version=None, *, timeout=10.0, retries=2, backoff=0.25,
                 channel=None, max_message_bytes=64 << 20, max_request_size=256, validate=True):
        super().__init__(model, version, timeout, retries, backoff, max_request_size, validate)
        try:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc
        except ImportError as error:
            raise ImportError(f"GRPCClient needs grpcio and tensorflow-serving-api: "
                              f"pip install 'tfvae[serving]' ({error})") from None
        self._grpc, self.target = grpc, target
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = channel or grpc.insecure_channel(target, options=options)
        self._owns_channel = channel is None
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def __repr__(self):
        return f"<GRPCClient {self.target} model={self.model!r} version={self.version}>"

    def predict(self, signature, inputs, *, validate=None):
        """Run `signature` on `inputs` (a dict of arrays, or the array of a one-input signature);
        a dict of numpy arrays. `validate` (default: the client's) checks and casts the inputs
        first; validate=False sends them with their own dtypes."""
        if self.validate if validate is None else validate:
            inputs = self._checked(signature, inputs)

        def send(part):
            request = grpc_request(self.model, signature, part, self.version)
            response = self._call(self._stub.Predict, request, self._where(signature))
            return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

        return self._in_parts(signature, inputs, send)

    def metadata(self):
        """TF Serving's GetModelMetadataResponse with the signature definitions."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = self.model
        if self.version is not None:
            request.model_spec.version.value = self.version
        return self._call(self._stub.GetModelMetadata, request, f"model {self.model!r}")

    def _read_signature_defs(self):
        from tensorflow_serving.apis import get_model_metadata_pb2

        definitions = get_model_metadata_pb2.SignatureDefMap()
        self.metadata().metadata["signature_def"].Unpack(definitions)
        return {name: definition for name, definition in definitions.signature_def.items()
                if not name.startswith("__")}

    def _call(self, method, request, where):
        def send():
            try:
                return method(request, timeout=self.timeout)
            except self._grpc.RpcError as error:
                code = error.code().name
                kind = ServingTimeout if code == "DEADLINE_EXCEEDED" else ServingError
                raise kind(f"TF Serving refused {where} with gRPC {code}: {error.details()}",
                           status=code, server_message=error.details()) from None

        return self._with_retries(send, lambda e: e.status in _RETRY_GRPC or (
            e.status == "RESOURCE_EXHAUSTED" and _QUEUE_DEADLINE in (e.server_message or "")))

    def close(self):
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
