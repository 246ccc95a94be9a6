"""TF Serving's warm-up file for an export: `assets.extra/tf_serving_warmup_requests`, one
request per signature, which TF Serving replays when it loads a version so that the first real
request does not pay for graph initialisation. `tfvae.export` writes it into every version.

    write_warmup_requests("saved_models/vae_mnist/3", model_name="vae_mnist")
    # -> saved_models/vae_mnist/3/assets.extra/tf_serving_warmup_requests

The records are encoded here from the protobuf wire format (a few nested length-delimited fields
around TensorFlow's own TensorProto), so an export needs no tensorflow-serving-api;
tests/test_serving.py checks them byte for byte against the real PredictionLog message.
"""
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfvae.signatures import signature_defs

#: where the warm-up file lives inside a SavedModel folder (TF Serving's fixed location).
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def warmup_requests(export_dir, model_name="model", batch_size=2):
    """One serialized `tensorflow.serving.PredictionLog` per signature of the SavedModel in
    `export_dir`, each holding a PredictRequest with a batch of `batch_size` examples (zeros for
    float inputs; 0, 1, ... for integer ones such as seeds).

    The inputs are read from the export's own SignatureDefs, so every signature it has is warmed
    up, `serving_default` included.

        records = warmup_requests("saved_models/vae_mnist/3")   # 6 records: bytes
    """
    records = []
    for name, signature in sorted(signature_defs(export_dir).items()):
        inputs = b""
        for alias, info in sorted(signature.inputs.items()):
            shape = [batch_size if d.size < 0 else d.size for d in info.tensor_shape.dim]
            dtype = tf.dtypes.as_dtype(info.dtype)
            value = (np.zeros(shape, dtype.as_numpy_dtype) if dtype.is_floating
                     else np.arange(np.prod(shape)).reshape(shape).astype(dtype.as_numpy_dtype))
            tensor = tf.make_tensor_proto(value, dtype=dtype).SerializeToString()
            inputs += _field(2, _field(1, alias.encode()) + _field(2, tensor))  # map entry
        model_spec = _field(1, model_name.encode()) + _field(3, name.encode())
        request = _field(1, model_spec) + inputs                      # PredictRequest
        records.append(_field(6, _field(1, request)))                 # PredictionLog.predict_log
    return records


def write_warmup_requests(export_dir, model_name="model", batch_size=2):
    """Write `assets.extra/tf_serving_warmup_requests` (a TFRecord file of PredictionLogs, one
    per signature) into the SavedModel folder `export_dir`; returns its path. `model_name` only
    labels the requests: TF Serving runs them against the version it is loading whatever their
    name.

        path = write_warmup_requests(saved_model_dir, model_name="vae_mnist")
    """
    path = Path(export_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in warmup_requests(export_dir, model_name, batch_size):
            writer.write(record)
    return path


def _varint(number):
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


def _field(number, payload):
    """A length-delimited protobuf field (wire type 2): a message, string or bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload
