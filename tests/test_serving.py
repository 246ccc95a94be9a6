"""TF Serving deployment, tested for real everywhere the TF Serving binary is not needed.

One tiny VAE on 8x8 digits is exported once for the module. Its SavedModel is run through
TensorFlow's session-based loader (TF Serving's `SavedModelBundle` contract), its warm-up file is
parsed as PredictionLogs and replayed, the config files are parsed with TF Serving's protos, and
the clients talk to tests/serving_double.py: loopback test doubles of TF Serving's REST and gRPC
APIs that run the real SavedModel.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import tfvae
from tfvae import serving, signatures, warmup
from tfvae.loading import LoadedModel
from tfvae.serving import GRPCClient, RESTClient, ServingError, ServingTimeout
from serving_double import GRPCDouble, RESTDouble, SavedModelRunner, Status

SIGNATURES = ("encode", "decode", "sample", "reconstruct", "serving_default", "score",
              "log_likelihood")
#: the k of the log_likelihood calls here: a pass of 100 draws and part of another
K_TEST = 130
NO_SERVING_API = "needs tensorflow-serving-api (pip install 'tfvae[serving]')"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, digits):
    tf_keras.utils.set_random_seed(0)
    model = tfvae.models.get("vae", input_shape=(8, 8, 1), latent_dim=3, hidden_units=(16,))
    models_dir = tmp_path_factory.mktemp("saved_models")
    path = tfvae.export(model, models_dir / "vae")
    z = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    cases = {"encode": digits[:4], "decode": z, "sample": np.array([0, 1, 7], np.int64),
             "reconstruct": digits[:4], "serving_default": digits[4:9], "score": digits[9:12],
             "log_likelihood": digits[12:15]}
    return SimpleNamespace(model=model, models_dir=models_dir, path=path, cases=cases)


@pytest.fixture(scope="module")
def rest_server(exported):
    with RESTDouble(exported.models_dir) as server:
        yield server


@pytest.fixture(scope="module")
def grpc_server(exported):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc", reason=NO_SERVING_API)
    with GRPCDouble(exported.models_dir) as server:
        yield server


def inputs_for(signature, value):
    """The inputs of `signature` for `value` (its first input, x, z or the seeds), with the
    defaults the clients and the loader use: seeds 0, 1, ... for the rows, and k = K_TEST."""
    names = signatures.input_names(signature)
    if isinstance(value, dict):
        return value
    inputs = {names[0]: value}
    if "seed" in names[1:]:
        inputs["seed"] = np.arange(len(value), dtype=np.int64)
    if "k" in names:
        inputs["k"] = np.full(len(value), K_TEST, np.int64)
    return inputs


def expected(model, signature, value):
    inputs, contract = inputs_for(signature, value), signatures.get(signature)
    function = getattr(model, contract.method)
    arguments = [tf.constant(inputs[i.name], i.dtype) for i in contract.inputs]
    return {key: tensor.numpy() for key, tensor in function(*arguments).items()}


def check_outputs(signature, got, want):
    # Draws included: they come from the seeds, the same in the server as in memory.
    assert set(got) == set(want), signature
    for key, value in want.items():
        assert got[key].shape == value.shape, (signature, key)
        assert got[key].dtype == value.dtype, (signature, key)
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-4,
                                   err_msg=f"{signature}/{key}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the SavedModel as TF Serving loads it -----------------------------------------------------
def test_session_loader_runs_every_signature_like_tf_serving(exported):
    graph, results = tf.Graph(), {}
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(exported.path))
        definitions = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
        assert set(definitions) == set(SIGNATURES) == set(signatures.names())
        for name, signature in definitions.items():
            assert signature.method_name == "tensorflow/serving/predict"
            assert sorted(signature.inputs) == sorted(signatures.input_names(name))
            inputs = inputs_for(name, exported.cases[name])
            fetches = {key: info.name for key, info in signature.outputs.items()}
            results[name] = session.run(fetches, {info.name: inputs[alias] for alias, info
                                                  in signature.inputs.items()})
    for name, got in results.items():
        check_outputs(name, got, expected(exported.model, name, exported.cases[name]))


def test_the_export_refuses_wrong_shapes_inside_the_graph(exported):
    # TF Serving's C++ Session::Run does not check feeds against the signature; without the
    # export's own check a [2, 8, 8, 2] batch of 8x8x1 images came back as 4 rows.
    runner = SavedModelRunner(exported.path)
    bad = [("encode", "x", np.zeros((2, 8, 8), np.float32), "[?,8,8,1]"),
           ("reconstruct", "x", np.zeros((2, 8, 8, 2), np.float32), "[?,8,8,1]"),
           ("decode", "z", np.zeros((2, 4), np.float32), "[?,3]"),
           ("sample", "seed", np.zeros((2, 1), np.int64), "[?]"),
           ("score", "seed", np.zeros((2, 1), np.int64), "[?]")]
    try:
        for signature, alias, value, shape in bad:
            inputs = inputs_for(signature, np.zeros((2, 8, 8, 1), np.float32))
            with pytest.raises(Status) as caught:
                runner.predict(signature, {**inputs, alias: value})
            assert caught.value.code == "INVALID_ARGUMENT"
            assert f"is not compatible with expected shape {shape}" in caught.value.message
    finally:
        runner.close()


def test_warmup_file_holds_a_prediction_log_per_signature_that_runs(exported):
    prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2",
                                             reason=NO_SERVING_API)
    path = exported.path / "assets.extra" / "tf_serving_warmup_requests"
    assert exported.path / warmup.WARMUP_FILE == path
    raw = [record.numpy() for record in tf.data.TFRecordDataset(str(path))]
    assert raw == warmup.warmup_requests(exported.path, model_name="vae")
    logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in raw]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == \
        sorted(SIGNATURES)
    runner = SavedModelRunner(exported.path)
    try:
        for record, log in zip(raw, logs):
            assert log.WhichOneof("log_type") == "predict_log"
            request = log.predict_log.request
            signature = request.model_spec.signature_name
            assert request.model_spec.name == "vae"
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
            assert sorted(inputs) == sorted(signatures.input_names(signature))
            assert all(value.shape[0] == 2 for value in inputs.values())
            check_outputs(signature, runner.predict(signature, inputs),
                          expected(exported.model, signature, inputs))
            # The hand-encoded record is byte for byte what the real proto library writes.
            real = prediction_log_pb2.PredictionLog()
            real.predict_log.request.model_spec.name = "vae"
            real.predict_log.request.model_spec.signature_name = signature
            for alias, array in inputs.items():
                real.predict_log.request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
            assert real.SerializeToString(deterministic=True) == record
    finally:
        runner.close()


# ---- configuration files -----------------------------------------------------------------------
def test_serving_config_parses_as_tf_servings_model_server_config(exported, tmp_path):
    config_pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2",
                                     reason=NO_SERVING_API)
    from google.protobuf import text_format

    models = tmp_path / "saved_models"
    for name, version in [("a", 1), ("a", 2), ("b", 1)]:
        shutil.copytree(exported.path, models / name / str(version))
    (models / "notes").mkdir()  # no version: not a model
    (models / "models.config").write_text("")

    def parse(text):
        config = text_format.Parse(text, config_pb2.ModelServerConfig())
        return {entry.name: entry for entry in config.model_config_list.config}

    entries = parse(serving.serving_config(models))
    assert set(entries) == {"a", "b"}
    assert entries["a"].base_path == "/models/a" and entries["a"].model_platform == "tensorflow"
    assert entries["b"].model_version_policy.latest.num_versions == 1
    entries = parse(serving.serving_config(models, {"a": [1, 2], "b": "all"}, "/srv/zoo/"))
    assert list(entries["a"].model_version_policy.specific.versions) == [1, 2]
    assert entries["b"].model_version_policy.WhichOneof("policy_choice") == "all"
    assert entries["b"].base_path == "/srv/zoo/b"
    entries = parse(serving.serving_config(models, "latest:2"))
    assert entries["a"].model_version_policy.latest.num_versions == 2
    for policy in ["latest:0", "sometimes", "specific:2", {"c": "all"}, "all:3"]:
        with pytest.raises(ValueError):
            serving.serving_config(models, policy)  # b has no version 2; there is no model c
    with pytest.raises(FileNotFoundError):
        serving.serving_config(tmp_path / "empty")
    assert parse(serving.serving_config(models, base_path="gs://zoo/models"))["a"].base_path == \
        "gs://zoo/models/a"
    for relative in ["saved_models", "./models", "models/"]:
        # TF Serving stops at start-up on these: "Expected model a to have an absolute path or URI"
        with pytest.raises(ValueError, match="requires an absolute path or URI"):
            serving.serving_config(models, base_path=relative)


def test_serving_config_command_refuses_a_relative_base_path(exported, tmp_path, capsys):
    from tfvae import cli

    batching = tmp_path / "batching.config"
    with pytest.raises(SystemExit, match="requires an absolute path or URI") as caught:
        cli.main(["serving-config", str(exported.models_dir), "--base-path", "saved_models",
                  "--batching", str(batching)])
    assert "/models" in str(caught.value)  # says what to give instead
    assert capsys.readouterr().out == "" and not batching.exists()  # nothing half-written


def batching_parameters_message():
    """TF Serving's BatchingParameters (session_bundle_config.proto, not in the pip package),
    built from its field list."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfvae_test/session_bundle_config.proto", package="tensorflow.serving",
        dependency=["google/protobuf/wrappers.proto"], syntax="proto3")
    message = proto.message_type.add(name="BatchingParameters")
    for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                   "max_enqueued_batches", "num_batch_threads"], start=1):
        message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                          type_name=".google.protobuf.Int64Value", label=field.LABEL_OPTIONAL)
    message.field.add(name="thread_pool_name", number=5, type=field.TYPE_MESSAGE,
                      type_name=".google.protobuf.StringValue", label=field.LABEL_OPTIONAL)
    message.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                      label=field.LABEL_REPEATED)
    message.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                      label=field.LABEL_OPTIONAL)
    # The newer fields, with the wrapper types of TF Serving's own tests ("enable_large_batch_
    # splitting { value: True }"); the text format goes by name, so the numbers do not matter.
    message.field.add(name="enable_large_batch_splitting", number=8, type=field.TYPE_MESSAGE,
                      type_name=".google.protobuf.BoolValue", label=field.LABEL_OPTIONAL)
    message.field.add(name="max_execution_batch_size", number=9, type=field.TYPE_MESSAGE,
                      type_name=".google.protobuf.Int64Value", label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_parameters_parse_as_tf_servings_message():
    from google.protobuf import text_format

    parsed = text_format.Parse(serving.batching_parameters(), batching_parameters_message()())
    assert parsed.max_batch_size.value == 256 and parsed.batch_timeout_micros.value == 0
    assert parsed.HasField("batch_timeout_micros")  # 0 written, not left to a default
    assert parsed.num_batch_threads.value == os.cpu_count()
    assert parsed.max_enqueued_batches.value == 100
    assert parsed.enable_large_batch_splitting.value is True
    assert parsed.max_execution_batch_size.value == 256
    parsed = text_format.Parse(
        serving.batching_parameters(1024, 2000, num_batch_threads=8, max_execution_batch_size=64),
        batching_parameters_message()())
    assert (parsed.max_batch_size.value, parsed.batch_timeout_micros.value,
            parsed.num_batch_threads.value, parsed.max_execution_batch_size.value) == \
        (1024, 2000, 8, 64)
    parsed = text_format.Parse(serving.batching_parameters(enable_large_batch_splitting=False),
                               batching_parameters_message()())
    assert not parsed.HasField("enable_large_batch_splitting")
    assert not parsed.HasField("max_execution_batch_size")
    for bad, message in [(dict(max_batch_size=0), "positive"),
                         (dict(batch_timeout_micros=-1), "non-negative"),
                         (dict(num_batch_threads=1.5), "positive"),
                         (dict(max_execution_batch_size=512), "at most max_batch_size"),
                         (dict(enable_large_batch_splitting=False, max_execution_batch_size=64),
                          "only applies with enable_large_batch_splitting")]:
        with pytest.raises(ValueError, match=message):
            serving.batching_parameters(**bad)


# ---- what the clients send -------------------------------------------------------------------
def test_rest_bodies_follow_tf_servings_documented_json(digits):
    x = digits[:2]
    assert serving.rest_request_body("encode", {"x": x}) == \
        {"signature_name": "encode", "inputs": {"x": x.tolist()}}
    assert serving.rest_request_body("encode", {"x": x}, "row") == \
        {"signature_name": "encode", "instances": x.tolist()}
    assert serving.rest_request_body("sample", {"seed": np.array([3, 4])}, "row") == \
        {"signature_name": "sample", "instances": [3, 4]}
    assert serving.rest_request_body("decode", np.zeros((1, 2))) == \
        {"signature_name": "decode", "inputs": [[0.0, 0.0]]}
    assert serving.rest_request_body("two", {"a": [[1, 2], [3, 4]], "b": [5, 6]}, "row") == \
        {"signature_name": "two", "instances": [{"a": [1, 2], "b": 5}, {"a": [3, 4], "b": 6}]}
    with pytest.raises(ValueError):
        serving.rest_request_body("two", {"a": [1, 2], "b": [5]}, "row")
    with pytest.raises(ValueError):
        serving.rest_request_body("encode", {"x": x}, "csv")


def metadata_json(export_dir, extra=None):
    """What TF Serving's REST metadata answer holds for an export (plus `extra` definitions)."""
    from google.protobuf import json_format

    definitions = {name: json_format.MessageToDict(value, preserving_proto_field_name=True)
                   for name, value in signatures.signature_defs(export_dir).items()}
    definitions.update(extra or {})
    return {"model_spec": {"name": "vae", "signature_name": "", "version": "3"},
            "metadata": {"signature_def": {"signature_def": definitions}}}


def test_rest_client_sends_tf_servings_urls_and_bodies(exported, digits, monkeypatch):
    import io
    import json

    sent = []
    custom = {"custom": {
        "inputs": {"a": {"dtype": "DT_INT64", "tensor_shape": {"dim": [{"size": "-1"}]}}},
        "outputs": {"probability": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}]}}},
        "method_name": "tensorflow/serving/predict"}}

    def fake_urlopen(request, timeout):
        sent.append((request.get_method(), request.full_url, request.data, timeout))
        if request.full_url.endswith("/metadata"):
            answer = metadata_json(exported.path, custom)
        elif request.full_url.endswith(":predict") and json.loads(request.data)["signature_name"] == "custom":
            answer = {"outputs": [0.25, 0.75]}  # TF Serving does not name a lone output
        else:
            answer = {"predictions": [{"x": [0.5], "z": [1]}]}
        return io.BytesIO(json.dumps(answer).encode())

    monkeypatch.setattr(serving.urllib.request, "urlopen", fake_urlopen)
    client = RESTClient("http://tfs.example:8501/", "vae", version=3, format="row", timeout=4)
    assert client.sample(np.array([1, 2], np.int32))["x"].dtype == np.float32
    assert sent[0][1] == "http://tfs.example:8501/v1/models/vae/versions/3/metadata"
    method, url, data, timeout = sent[-1]
    assert (method, url, timeout) == ("POST", "http://tfs.example:8501/v1/models/vae/versions/3:predict", 4)
    assert json.loads(data) == {"signature_name": "sample", "instances": [1, 2]}
    RESTClient("http://tfs.example:8501", "vae").encode(digits[:1].astype(np.float64))
    method, url, data, _ = sent[-1]
    assert url == "http://tfs.example:8501/v1/models/vae:predict"
    assert json.loads(data) == {"signature_name": "encode",
                                "inputs": {"x": digits[:1].tolist(), "seed": [0]}}
    client = RESTClient("http://tfs.example:8501", "vae")
    for _ in range(2):
        probability = client.predict("custom", {"a": [1, 2]})["probability"]
        np.testing.assert_array_equal(probability, np.float32([0.25, 0.75]))
    assert [url for _, url, _, _ in sent].count("http://tfs.example:8501/v1/models/vae/metadata") == 2
    assert client.attempts == 3  # one metadata read for this client, then two predictions


def test_grpc_request_is_tf_servings_predict_request():
    predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2", reason=NO_SERVING_API)
    request = serving.grpc_request("vae", "sample", {"seed": np.array([1, 2])}, version=3)
    assert isinstance(request, predict_pb2.PredictRequest)
    assert (request.model_spec.name, request.model_spec.signature_name) == ("vae", "sample")
    assert request.model_spec.version.value == 3
    assert tf.dtypes.as_dtype(request.inputs["seed"].dtype) == tf.int64
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["seed"]), [1, 2])
    request = serving.grpc_request("vae", "decode", np.zeros((2, 3), np.float32))
    assert not request.model_spec.HasField("version") and list(request.inputs) == ["z"]
    assert list(request.inputs["z"].tensor_shape.dim) == list(
        tf.make_tensor_proto(np.zeros((2, 3), np.float32)).tensor_shape.dim)


# ---- the clients end to end, against the test doubles -----------------------------------------
def call(client, signature, value):
    if signature == "serving_default":
        return client.predict(signature, value)
    if signature == "log_likelihood":
        return client.log_likelihood(value, k=K_TEST)
    return getattr(client, signature)(value)


@pytest.mark.parametrize("format", ["row", "columnar"])
def test_rest_client_runs_every_signature(exported, rest_server, format):
    client = RESTClient(rest_server.url, "vae", format=format)
    for signature in SIGNATURES:
        value = exported.cases[signature]
        check_outputs(signature, call(client, signature, value),
                      expected(exported.model, signature, value))
    assert client.attempts == 1 + len(SIGNATURES)  # the metadata, read once, then each call
    versioned = RESTClient(rest_server.url, "vae", version=1, format=format)
    np.testing.assert_allclose(versioned.sample(2)["x"], client.sample([0, 1])["x"])


def test_grpc_client_runs_every_signature(exported, grpc_server):
    with GRPCClient(grpc_server.target, "vae", version=1) as client:
        for signature in SIGNATURES:
            value = exported.cases[signature]
            check_outputs(signature, call(client, signature, value),
                          expected(exported.model, signature, value))


def test_clients_and_the_loader_share_one_set_of_signature_methods(exported):
    served = tfvae.load(exported.path)
    for cls in (RESTClient, GRPCClient, LoadedModel):
        assert issubclass(cls, signatures.SignatureMethods)
        for name in signatures.SIGNATURES:
            assert getattr(cls, name) is getattr(signatures.SignatureMethods, name), (cls, name)
    # The same seeds as an int count, and the same refusal of a bad count, before any request.
    client = RESTClient(f"http://127.0.0.1:{free_port()}", "vae", retries=0)
    for bad, error in [(0, ValueError), (2.5, TypeError)]:
        for model in (client, served):
            with pytest.raises(error, match=r"sample\(\) count"):
                model.sample(bad)
    assert client.attempts == 0
    np.testing.assert_array_equal(served.sample(3)["x"], served.sample([0, 1, 2])["x"])


def test_rest_status_and_metadata(rest_server):
    client = RESTClient(rest_server.url, "vae")
    (status,) = client.status()["model_version_status"]
    assert status["version"] == "1" and status["state"] == "AVAILABLE"
    metadata = client.metadata()["metadata"]["signature_def"]
    assert list(metadata) == ["signature_def"]  # the map itself: no "@type" as in an Any's JSON
    metadata = metadata["signature_def"]
    assert set(metadata) >= set(SIGNATURES)
    assert metadata["encode"]["inputs"]["x"]["dtype"] == "DT_FLOAT"


REST_ERRORS = [  # (signature, inputs, HTTP status, what TF Serving says)
    ("nope", {"x": [[0.0]]}, 400, 'Serving signature name: "nope" not found in signature def'),
    ("reconstruct", {"x": np.zeros((2, 8, 8))}, 400,
     "is not compatible with expected shape [?,8,8,1]"),
    ("decode", {"z": np.zeros((2, 4))}, 400, "is not compatible with expected shape [?,3]"),
    ("sample", {"seed": [0.5]}, 400, "JSON Value: 0.5 Type: Number is not of expected type: int64"),
    ("reconstruct", {"x": [["a"]]}, 400,
     'JSON Value: "a" Type: String is not of expected type: float'),
    ("reconstruct", {"y": [[0.0]]}, 400, "Missing named input: x in 'inputs' object."),
]


@pytest.mark.parametrize("signature, inputs, status, message", REST_ERRORS,
                         ids=[message[:30] for *_, message in REST_ERRORS])
def test_rest_bad_requests_get_tf_servings_errors(rest_server, signature, inputs, status, message):
    client = RESTClient(rest_server.url, "vae", retries=3)
    with pytest.raises(ServingError) as caught:
        client.predict(signature, inputs, validate=False)  # the server's own checks
    assert caught.value.status == status
    assert message in caught.value.server_message
    assert f"'{signature}' with HTTP {status}: " in str(caught.value) and message in str(caught.value)
    assert client.attempts == 1  # a bad request is not retried


def test_rest_unknown_model_or_version_is_not_found(rest_server, digits):
    for client, request in [(RESTClient(rest_server.url, "nope"), "Latest(nope)"),
                            (RESTClient(rest_server.url, "vae", version=9), "Specific(vae, 9)")]:
        with pytest.raises(ServingError) as caught:
            client.encode(digits[:1])
        assert caught.value.status == 404
        assert caught.value.server_message == f"Servable not found for request: {request}"


def test_grpc_bad_requests_get_tf_servings_errors(grpc_server, digits):
    x = digits[:2]
    cases = [
        ("vae", "nope", {"x": x}, "FAILED_PRECONDITION", 'Serving signature key "nope" not found.'),
        ("vae", "reconstruct", {"x": x[..., 0]}, "INVALID_ARGUMENT",
         "is not compatible with expected shape [?,8,8,1]"),
        ("vae", "reconstruct", {"x": x.astype(np.float64)}, "INVALID_ARGUMENT",
         "Expects arg[0] to be float but double is provided"),
        ("vae", "sample", {"seed": np.array([0.5])}, "INVALID_ARGUMENT",
         "Expects arg[0] to be int64 but double is provided"),
        ("vae", "reconstruct", {"x": x, "y": x}, "INVALID_ARGUMENT",
         "input size does not match signature: 2!=1 len({x,y}) != len({x}). Sent extra: {y}."),
        ("nope", "reconstruct", {"x": x}, "NOT_FOUND",
         "Servable not found for request: Latest(nope)"),
    ]
    for model, signature, inputs, code, message in cases:
        with GRPCClient(grpc_server.target, model, retries=3) as client:
            with pytest.raises(ServingError) as caught:
                client.predict(signature, inputs, validate=False)  # the server's own checks
            assert caught.value.status == code, message
            assert message in caught.value.server_message
            assert f"with gRPC {code}: " in str(caught.value) and client.attempts == 1


# ---- retries and timeouts ----------------------------------------------------------------------
def test_rest_retries_with_backoff_on_unavailable_then_gives_up(rest_server, digits):
    rest_server.fail_next(2, status=503)
    # validate=False: no metadata request first, so the faults hit the predictions themselves.
    client = RESTClient(rest_server.url, "vae", retries=2, backoff=0.01, validate=False)
    assert client.reconstruct(digits[:1])["x"].shape == (1, 8, 8, 1)
    assert client.attempts == 3
    rest_server.fail_next(2, status=503, message="the servable is being reloaded")
    client = RESTClient(rest_server.url, "vae", retries=1, backoff=0.01, validate=False)
    with pytest.raises(ServingError, match="HTTP 503: the servable is being reloaded"):
        client.reconstruct(digits[:1])
    assert client.attempts == 2
    rest_server.fail_next(1, status=500, message="boom")
    client = RESTClient(rest_server.url, "vae", retries=3, backoff=0.01, validate=False)
    with pytest.raises(ServingError, match="HTTP 500: boom"):
        client.reconstruct(digits[:1])  # a server failure is not retried
    assert client.attempts == 1


@pytest.mark.parametrize("status, message, retried", [
    (504, "Deadline Exceeded", True),
    (429, "Run() timeout exceeded while waiting in batching queue", True),  # a deadline expiry
    (429, "OOM when allocating tensor with shape[256,512]", False),        # not one
    (502, "Bad Gateway", False),                                           # not TF Serving's
    (404, "Servable not found for request: Latest(vae)", False),
])
def test_rest_retries_only_unavailable_and_deadline_expiries(rest_server, digits, status, message,
                                                             retried):
    rest_server.fail_next(1, status=status, message=message)
    client = RESTClient(rest_server.url, "vae", retries=1, backoff=0.01, validate=False)
    if retried:
        assert client.reconstruct(digits[:1])["x"].shape == (1, 8, 8, 1)
    else:
        with pytest.raises(ServingError, match=f"HTTP {status}: "):
            client.reconstruct(digits[:1])
    assert client.attempts == (2 if retried else 1)


def test_rest_timeouts_and_refused_connections_are_retried(rest_server, digits):
    rest_server.delay = 0.5
    try:
        client = RESTClient(rest_server.url, "vae", timeout=0.1, retries=1, backoff=0.01)
        with pytest.raises(ServingTimeout, match="within 0.1 s"):
            client.encode(digits[:1])
        assert client.attempts == 2
    finally:
        rest_server.delay = 0.0
    client = RESTClient(f"http://127.0.0.1:{free_port()}", "vae", retries=2, backoff=0.01)
    with pytest.raises(ServingError, match="could not reach TF Serving") as caught:
        client.encode(digits[:1])
    assert caught.value.status is None and client.attempts == 3


def test_grpc_unavailable_server_is_retried(digits):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc", reason=NO_SERVING_API)
    with GRPCClient(f"127.0.0.1:{free_port()}", "vae", timeout=5, retries=1, backoff=0.01) as client:
        with pytest.raises(ServingError) as caught:
            client.encode(digits[:1])
    assert caught.value.status == "UNAVAILABLE" and client.attempts == 2


def test_clients_import_without_tfp_keras_or_grpc():
    # A client machine needs TensorFlow and numpy only; gRPC only for the gRPC client.
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow_probability", "tf_keras", "grpc", "tensorflow_serving"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, Block())
from tfvae.serving import RESTClient, GRPCClient
print(RESTClient("http://localhost:8501", "vae").model_url)
try:
    GRPCClient("localhost:8500", "vae")
except ImportError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "http://localhost:8501/v1/models/vae" in result.stdout
    assert "pip install 'tfvae[serving]'" in result.stdout


# ---- the clients check inputs against the signature's metadata before sending -------------------
def test_clients_refuse_what_the_signature_does_not_accept_before_sending(exported, rest_server,
                                                                          digits):
    client = RESTClient(rest_server.url, "vae")
    client.signature_defs()  # the metadata, read once
    before = rest_server.requests
    cases = [
        (lambda: client.encode(digits[:2, :, :, 0]),
         r"signature 'encode' takes x of shape \[batch, 8, 8, 1\] and dtype float32; got shape"),
        (lambda: client.decode(np.zeros((2, 4))), r"takes z of shape \[batch, 3\]"),
        (lambda: client.sample([0.5, 1.0]), r"dtype int64; got dtype float64 \(integers"),
        (lambda: client.encode(np.full((1, 8, 8, 1), 1e300)),
         "got float64 values that float32 cannot hold"),
        (lambda: client.encode(np.array([["a"]])), "dtype float32; got dtype <U1"),
        (lambda: client.predict("nope", {"x": digits[:1]}), "no such signature"),
        (lambda: client.predict("reconstruct", {"y": digits[:1]}), r"takes inputs \['x'\]"),
    ]
    for call_it, message in cases:
        with pytest.raises(ValueError, match=message):
            call_it()
    assert rest_server.requests == before  # a caller's mistake never reaches the server
    # What loses nothing is cast: float64 images, int32 seeds.
    got = client.encode(digits[:2].astype(np.float64))["mean"]
    np.testing.assert_allclose(got, expected(exported.model, "encode", digits[:2])["mean"],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(client.sample(np.array([0, 1], np.int32))["x"],
                               client.sample([0, 1])["x"])


def test_grpc_client_checks_inputs_against_grpc_metadata(exported, grpc_server, digits):
    with GRPCClient(grpc_server.target, "vae") as client:
        definitions = client.signature_defs()
        assert set(definitions) == set(SIGNATURES)
        with pytest.raises(ValueError, match=r"of shape \[batch, 8, 8, 1\] and dtype float32; got shape \[2, 8, 8\]"):
            client.encode(digits[:2, :, :, 0])
        assert client.attempts == 1  # the metadata only
        check_outputs("encode", client.encode(digits[:3].astype(np.float64)),
                      expected(exported.model, "encode", digits[:3]))


# ---- TF Serving as it batches: the double's model of it -----------------------------------------
def post(url, body):
    """(HTTP status, JSON answer) of a raw REST request, for what a client would not send."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rest_row_format_errors_name_the_element_and_key(rest_server, digits):
    url = f"{rest_server.url}/v1/models/vae:predict"
    image = digits[0].tolist()
    cases = [
        ([{"x": "a"}], "Failed to process element: 0 key: x of 'instances' list. Error: "
                       "INVALID_ARGUMENT: JSON Value: \"a\" Type: String is not of expected type: float"),
        ([{"x": image}, {"y": image}], "Failed to process element: 1 key: y of 'instances' list. "
                                       "Error: INVALID_ARGUMENT: JSON object: does not have named "
                                       "input: y"),
        ([image, digits[1, :, :, 0].tolist()], "Failed to process element: 1 of 'instances' list."
                                               " Error: INVALID_ARGUMENT: Expecting shape "
                                               "[8,8,1] but got: [8,8]"),
        ([image, image[:4]], "Failed to process element: 1 of 'instances' list. Error: "
                             "INVALID_ARGUMENT: Expecting tensor size: 64 but got: 32"),
    ]
    for instances, message in cases:
        status, answer = post(url, {"signature_name": "reconstruct", "instances": instances})
        assert (status, answer["error"]) == (400, message)


@pytest.fixture
def two_versions(exported, tmp_path):
    models = tmp_path / "models"
    for version in (1, 2):
        shutil.copytree(exported.path, models / "vae" / str(version))
    return models


def test_doubles_serve_only_the_versions_of_the_policy(two_versions, digits):
    with RESTDouble(two_versions) as server:  # TF Serving's default policy: the latest
        (status,) = RESTClient(server.url, "vae").status()["model_version_status"]
        assert status["version"] == "2"
        with pytest.raises(ServingError) as caught:
            RESTClient(server.url, "vae", version=1).reconstruct(digits[:1])
        assert caught.value.status == 404
        assert caught.value.server_message == "Servable not found for request: Specific(vae, 1)"
    with RESTDouble(two_versions, version_policy="all") as server:
        statuses = RESTClient(server.url, "vae").status()["model_version_status"]
        assert [s["version"] for s in statuses] == ["1", "2"]
        assert RESTClient(server.url, "vae", version=1).reconstruct(digits[:1])["x"].shape == \
            (1, 8, 8, 1)


def test_large_requests_are_split_in_order_under_any_server_limit(exported, digits):
    z = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32)
    want = exported.model.decode_outputs(tf.constant(z))["x"].numpy()
    batching = serving.batching_parameters(4, enable_large_batch_splitting=False)
    with RESTDouble(exported.models_dir, batching=batching) as server:
        url = f"{server.url}/v1/models/vae:predict"
        status, answer = post(url, {"signature_name": "decode", "inputs": z.tolist()})
        assert (status, answer["error"]) == (400, "Task size 10 is larger than maximum input "
                                                  "batch size 4")
        server.batch_sizes.clear()
        client = RESTClient(server.url, "vae", max_request_size=3)
        np.testing.assert_allclose(client.decode(z)["x"], want, rtol=1e-5, atol=1e-6)
        assert server.batch_sizes == [3, 3, 3, 1]
        server.batch_sizes.clear()
        # A client that splits at more than the server's limit is told the limit and follows it.
        client = RESTClient(server.url, "vae", format="row")
        np.testing.assert_allclose(client.decode(z)["x"], want, rtol=1e-5, atol=1e-6)
        assert server.batch_sizes == [10, 4, 4, 2] and client.max_request_size == 4
        assert RESTClient(server.url, "vae", max_request_size=None).decode(z[:4])["x"].shape == \
            (4, 8, 8, 1)


def test_grpc_client_splits_large_requests(exported, digits):
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc", reason=NO_SERVING_API)
    batching = serving.batching_parameters(4, enable_large_batch_splitting=False)
    with GRPCDouble(exported.models_dir, batching=batching) as server:
        with GRPCClient(server.target, "vae") as client:
            check_outputs("reconstruct", client.reconstruct(digits[:11]),
                          expected(exported.model, "reconstruct", digits[:11]))
            assert client.max_request_size == 4


def send_in_background(function, *args):
    """Run function(*args) in a thread; a callable that returns its result or raises its error."""
    import threading

    outcome = {}

    def run():
        try:
            outcome["value"] = function(*args)
        except Exception as error:  # handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()

    def result():
        thread.join(timeout=60)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def test_a_full_queue_answers_503_unavailable_which_the_clients_retry(exported, digits):
    batching = serving.batching_parameters(4, max_enqueued_batches=1,
                                           enable_large_batch_splitting=False)
    with RESTDouble(exported.models_dir, batching=batching) as server:
        waiting = RESTClient(server.url, "vae", retries=0)
        waiting.signature_defs()
        with server.hold():
            first = send_in_background(waiting.reconstruct, digits[:3])
            server.wait_queued(1)
            with pytest.raises(ServingError) as caught:
                RESTClient(server.url, "vae", retries=0).reconstruct(digits[3:5])
        assert caught.value.status == 503
        assert caught.value.server_message == (
            "The batch scheduling queue to which this task was submitted is full; currently 1 "
            "batches enqueued and max_enqueued_batches is 1")
        check_outputs("reconstruct", first(), expected(exported.model, "reconstruct", digits[:3]))
        # The same, with the queue emptied while the client waits between tries.
        patient = RESTClient(server.url, "vae", retries=6, backoff=0.05)
        patient.signature_defs()
        with server.hold():
            first = send_in_background(waiting.reconstruct, digits[:3])
            server.wait_queued(1)
            second = send_in_background(patient.reconstruct, digits[3:5])
            while patient.attempts < 3:  # the metadata, then at least one refused try
                time.sleep(0.01)
        check_outputs("reconstruct", second(), expected(exported.model, "reconstruct", digits[3:5]))
        first()
    # With splitting, the queue's room is counted in examples.
    batching = serving.batching_parameters(8, max_enqueued_batches=1, max_execution_batch_size=4)
    with RESTDouble(exported.models_dir, batching=batching) as server:
        with pytest.raises(ServingError, match="task size is 6 but scheduling capacity is only 4"):
            RESTClient(server.url, "vae", retries=0).reconstruct(digits[:6])


def test_splitting_runs_a_large_request_across_batches(exported, digits):
    batching = serving.batching_parameters(8, max_execution_batch_size=4)
    with RESTDouble(exported.models_dir, batching=batching) as server:
        client = RESTClient(server.url, "vae")
        client.signature_defs()
        with server.hold():
            one = send_in_background(client.decode, np.zeros((3, 3), np.float32))
            server.wait_queued(1)
            two = send_in_background(client.decode, np.ones((6, 3), np.float32))
            server.wait_queued(2)
        # 3 + 1 in the first batch, the other 5 of the second request in two more: each answer
        # is still its own request's, in order.
        for result, z in [(one, np.zeros((3, 3))), (two, np.ones((6, 3)))]:
            want = exported.model.decode_outputs(tf.constant(z, tf.float32))["x"].numpy()
            np.testing.assert_allclose(result()["x"], want, rtol=1e-5, atol=1e-6)


def test_with_batching_one_malformed_request_fails_its_batch_unless_the_client_checks(exported,
                                                                                      digits):
    batching = serving.batching_parameters(8)
    with RESTDouble(exported.models_dir, batching=batching) as server:
        good = RESTClient(server.url, "vae", retries=0)
        good.signature_defs()
        unchecked = RESTClient(server.url, "vae", retries=0, validate=False)
        with server.hold():
            first = send_in_background(good.reconstruct, digits[:2])
            server.wait_queued(1)
            second = send_in_background(unchecked.predict, "reconstruct", {"x": digits[2:4, :, :, 0]})
            server.wait_queued(2)
        for result in (first, second):  # the well-formed request fails with the other
            with pytest.raises(ServingError) as caught:
                result()
            assert caught.value.status == 400
            assert "from different tasks have different shapes and padding is turned off" in \
                caught.value.server_message
        # Checked first, the malformed request is refused at its sender and never joins a batch.
        with server.hold():
            first = send_in_background(good.reconstruct, digits[:2])
            server.wait_queued(1)
            with pytest.raises(ValueError, match=r"of shape \[batch, 8, 8, 1\]"):
                good.reconstruct(digits[2:4, :, :, 0])
            second = send_in_background(good.reconstruct, digits[2:4])
            server.wait_queued(2)
        check_outputs("reconstruct", first(), expected(exported.model, "reconstruct", digits[:2]))
        check_outputs("reconstruct", second(), expected(exported.model, "reconstruct", digits[2:4]))


def test_with_batching_a_float64_request_fails_its_batch_unless_the_client_casts(exported,
                                                                                 digits):
    # Only gRPC carries float64 (JSON numbers are parsed as the signature's dtype).
    pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc", reason=NO_SERVING_API)
    with GRPCDouble(exported.models_dir, batching=serving.batching_parameters(8)) as server:
        with GRPCClient(server.target, "vae", retries=0) as good, \
                GRPCClient(server.target, "vae", retries=0, validate=False) as unchecked:
            good.signature_defs()
            with server.hold():
                first = send_in_background(good.reconstruct, digits[:2])
                server.wait_queued(1)
                second = send_in_background(unchecked.predict, "reconstruct",
                                            {"x": digits[2:4].astype(np.float64)})
                server.wait_queued(2)
            for result in (first, second):
                with pytest.raises(ServingError) as caught:
                    result()
                assert caught.value.status == "INTERNAL"
                assert caught.value.server_message == (
                    "Tensor concat operation failed: INVALID_ARGUMENT: Cannot concatenate tensors "
                    "that have different data types. Got float and double.")
            with server.hold():  # the checking client casts: both run in one batch
                first = send_in_background(good.reconstruct, digits[:2])
                server.wait_queued(1)
                second = send_in_background(good.reconstruct, digits[2:4].astype(np.float64))
                server.wait_queued(2)
            check_outputs("reconstruct", first(), expected(exported.model, "reconstruct", digits[:2]))
            check_outputs("reconstruct", second(), expected(exported.model, "reconstruct", digits[2:4]))
