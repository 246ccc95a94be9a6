"""Serve tfvae exports with TensorFlow Serving: its config files, warm-up requests and clients.

    # the server side: what `tfvae serving-config saved_models/` writes
    text = serving_config("saved_models", version_policy="latest:2")
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
from tfvae.signatures import SignatureMethods, as_array, cast, get, input_name, lone_output
# Part of this module's API (colab/3_serving.ipynb lists an export's signatures with it).
from tfvae.signatures import signature_defs  # noqa: F401

# Worth another try after a pause: the server is overloaded, restarting or slow.
_RETRY_HTTP = {429, 502, 503, 504}
_RETRY_GRPC = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}


# ---- server configuration ---------------------------------------------------------------------
def serving_config(models_dir, version_policy="latest", base_path="/models"):
    """The text of a TF Serving `--model_config_file`: a `model_config_list` with one entry per
    model folder of `models_dir` (a folder holding numbered versions with a saved_model.pb).

    Args:
        models_dir: e.g. "saved_models"; folders without a version are left out.
        version_policy: which versions TF Serving loads: "latest" (the newest), "latest:N" (the N
            newest), "all", "specific:1,3" or a list of version numbers; or a dict from model
            name to one of these (models not in it get "latest").
        base_path: where `models_dir` is inside the server (the container); a model's
            base_path is `<base_path>/<name>`.

    Example:
        Path("saved_models/models.config").write_text(serving_config("saved_models", "latest:2"))
    """
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


def batching_parameters(max_batch_size=256, batch_timeout_micros=1000, num_batch_threads=None,
                        max_enqueued_batches=100):
    """The text of a TF Serving `--batching_parameters_file` (a BatchingParameters message) for
    these models on CPU: small dense networks, where one batch of 256 costs far less than 256
    single requests (bench/serving.py measures it), so merging concurrent requests pays.

    Args:
        max_batch_size: the largest merged batch; 256 is where bench/serving.py measures the
            throughput of the exported models.
        batch_timeout_micros: how long a request may wait for others to join its batch: 1 ms,
            the value TF Serving's batching guide suggests for smoothing batches at low request
            rates, and of the order of one small request's own latency here.
        num_batch_threads: threads that run batches; by default the number of CPU cores of the
            machine that runs this function, so run it on (or pass the cores of) the server.
        max_enqueued_batches: the queue bound: beyond it TF Serving answers RESOURCE_EXHAUSTED
            (HTTP 429) at once instead of letting latency grow; the clients retry those.

    The inputs have fixed shapes, so no padding (pad_variable_length_inputs) is needed, and on
    CPU `allowed_batch_sizes` would only add padding work, so it is left out.
    """
    num_batch_threads = num_batch_threads or os.cpu_count() or 1
    values = {"max_batch_size": max_batch_size, "batch_timeout_micros": batch_timeout_micros,
              "max_enqueued_batches": max_enqueued_batches, "num_batch_threads": num_batch_threads}
    for key, value in values.items():
        if isinstance(value, bool) or int(value) != value or value < (0 if "micros" in key else 1):
            raise ValueError(f"{key}={value!r} must be a positive integer")
    return "".join(f"{key} {{ value: {int(value)} }}\n" for key, value in values.items())


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
    """What both clients share: the tfvae signatures on top of `predict`, and retries."""

    def __init__(self, model, version, timeout, retries, backoff):
        self.model, self.version = model, (None if version is None else int(version))
        self.timeout, self.retries, self.backoff = timeout, int(retries), backoff
        self.attempts = 0  # requests sent, tries included (for monitoring and tests)

    def _run_signature(self, name, value):
        # Cast what loses nothing here; the server checks the rest and answers with its error.
        return self.predict(name, {input_name(name): cast(value, get(name).dtype)})

    def _where(self, signature):
        version = "" if self.version is None else f" version {self.version}"
        return f"model {self.model!r}{version}, signature {signature!r}"

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
        return {"signature_name": signature, key: as_array(inputs).tolist()}
    inputs = {name: as_array(value) for name, value in inputs.items()}
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
        retries: how many times to try again after a timeout, a refused connection or an
            HTTP 429/502/503/504; a request error (4xx) or a failure (500) is raised at once.
        backoff: seconds before the first retry, doubled for each next one.

    `encode`, `decode`, `sample`, `reconstruct` and `score` return dicts of numpy arrays, as
    `tfvae.load` does; errors raise `ServingError` with TF Serving's message.

    Example:
        client = RESTClient("http://localhost:8501", "vae_mnist")
        codes = client.encode(images)["mean"]
    """

    def __init__(self, url, model, version=None, *, format="columnar", timeout=10.0, retries=2,
                 backoff=0.25):
        super().__init__(model, version, timeout, retries, backoff)
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

    def predict(self, signature, inputs, format=None):
        """Run `signature` on `inputs` (a dict of arrays, or the array of a one-input signature),
        sent as they are; a dict of numpy arrays."""
        body = rest_request_body(signature, inputs, format or self.format)
        answer = self._request("POST", f"{self.model_url}:predict", body, signature)
        if "predictions" in answer:
            named = bool(answer["predictions"]) and isinstance(answer["predictions"][0], dict)
        else:
            named = isinstance(answer.get("outputs"), dict)
        return outputs_from_rest(answer, None if named else self._output_name(signature))

    def _output_name(self, signature):
        """The name of a one-output signature's output, which TF Serving's JSON leaves out: known
        for tfvae's signatures, else read once from the model's metadata."""
        if signature not in self._output_names:
            if lone_output(signature) is not None:
                self._output_names[signature] = lone_output(signature)
            else:
                definitions = self.metadata()["metadata"]["signature_def"]["signature_def"]
                outputs = definitions.get(signature, {}).get("outputs") or {"output": None}
                self._output_names[signature] = next(iter(outputs))
        return self._output_names[signature]

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

        return self._with_retries(send, lambda e: e.status is None or e.status in _RETRY_HTTP)


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
        if input_name(signature) is None:
            raise ValueError(f"gRPC needs named inputs: pass {{name: array}} for {signature!r}")
        inputs = {input_name(signature): inputs}
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(as_array(value)))
    return request


class GRPCClient(_Client):
    """Calls a model on TF Serving's gRPC API (PredictionService.Predict, port 8500 by default).

    Args:
        target: the server, e.g. "localhost:8500".
        model, version, timeout, retries, backoff: as for `RESTClient`; gRPC UNAVAILABLE,
            RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED are tried again.
        channel: a ready grpc.Channel (e.g. a secure one) instead of an insecure one to target.
        max_message_bytes: the largest request or answer (gRPC's default is 4 MiB, 1,300
            MNIST images).

    Needs `pip install tfvae[serving]` (grpcio and tensorflow-serving-api).

    Example:
        with GRPCClient("localhost:8500", "vae_mnist") as client:
            images = client.sample(16)["x"]
    """

    def __init__(self, target, model, version=None, *, timeout=10.0, retries=2, backoff=0.25,
                 channel=None, max_message_bytes=64 << 20):
        super().__init__(model, version, timeout, retries, backoff)
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

    def predict(self, signature, inputs):
        """Run `signature` on `inputs` (a dict of arrays, or the array of a one-input signature),
        sent with their own dtypes; a dict of numpy arrays."""
        request = grpc_request(self.model, signature, inputs, self.version)

        def send():
            try:
                return self._stub.Predict(request, timeout=self.timeout)
            except self._grpc.RpcError as error:
                code = error.code().name
                kind = ServingTimeout if code == "DEADLINE_EXCEEDED" else ServingError
                raise kind(f"TF Serving refused {self._where(signature)} with gRPC {code}: "
                           f"{error.details()}", status=code, server_message=error.details()) \
                    from None

        response = self._with_retries(send, lambda e: e.status in _RETRY_GRPC)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def close(self):
        if self._owns_channel:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
