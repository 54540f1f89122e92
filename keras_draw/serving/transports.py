"""TF Serving's predict calls, each a function of {input name: array} to {output name: array}: its
REST predict API (numpy and the standard library) and its gRPC PredictionService
(tensorflow-serving-api, imported on first use). Every failure (an HTTP or gRPC error status, a
timeout, a refused connection, a bad answer) raises `ServingError` with a one-line message."""

import http.client
import json
import math
import os
import socket
import urllib.error
import urllib.request

import numpy as np

from keras_draw.console import one_line

# A signature with one output comes back over REST without the output's name (TF Serving's
# documented behaviour); these are the names of DRAW's single outputs.
SINGLE_OUTPUTS = {"serving_default": "images", "generate": "images", "generate_seeded": "images"}
MAX_GRPC_MESSAGE = 1 << 30  # canvases of a large batch exceed gRPC's 4 MiB default
INT64_OUTPUTS = {"classes"}  # a DrawClassifier's most probable class; every other output is float32


class ServingError(Exception):
    """A request that failed, with a one-line message naming the server and the cause."""


# === REST: POST /v1/models/NAME[/versions/N]:predict ===


def rest_predict(url, model_name, signature, inputs, version=None, timeout=30.0, rows=False):
    """Calls `signature` through TF Serving's REST predict API; returns {output name: array}.

    Args:
        url: the server, e.g. "http://localhost:8501".
        inputs: {input name: array}; sent in the columnar format ("inputs"), or with `rows` in
            the row format ("instances").
    """
    endpoint = f"{url.rstrip('/')}/v1/models/{model_name}"
    endpoint += f"/versions/{version}:predict" if version is not None else ":predict"
    body = {"signature_name": signature, **_request_body(inputs, rows)}
    request = urllib.request.Request(
        endpoint, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise ServingError(f"HTTP {err.code} from {endpoint}: {_error_text(err)}") from None
    except (TimeoutError, socket.timeout):
        raise ServingError(f"No answer from {endpoint} within {timeout} s") from None
    except urllib.error.URLError as err:
        if isinstance(err.reason, (TimeoutError, socket.timeout)):
            raise ServingError(f"No answer from {endpoint} within {timeout} s") from None
        raise ServingError(f"Cannot reach {endpoint}: {one_line(err.reason)}") from None
    except (ConnectionError, http.client.HTTPException, ValueError) as err:  # dropped, or not JSON
        raise ServingError(f"Bad answer from {endpoint}: {one_line(err)}") from None
    return _response_arrays(answer, signature)


def _request_body(inputs, rows):
    """The "instances" (row) or "inputs" (columnar) part of a predict request."""
    lists = {name: np.asarray(value).tolist() for name, value in inputs.items()}
    if not rows:
        return {"inputs": lists}
    if len(lists) == 1:  # one input: each instance is that input's row
        return {"instances": next(iter(lists.values()))}
    count = len(next(iter(lists.values())))
    return {"instances": [{name: value[i] for name, value in lists.items()} for i in range(count)]}


def _error_text(err):
    """The message of an HTTP error: TF Serving's {"error": "..."} body, or the raw text."""
    text = err.read().decode(errors="replace")
    try:
        return one_line(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return one_line(text[:300]) or err.reason


def _response_arrays(answer, signature):
    """{output name: array} from a "predictions" (row) or "outputs" (columnar) answer."""
    single = SINGLE_OUTPUTS.get(signature, "output")
    if not isinstance(answer, dict):
        raise ServingError(f"The answer is not a JSON object: {one_line(str(answer)[:200])}")
    if "predictions" in answer:
        predictions = answer["predictions"]
        if predictions and isinstance(predictions[0], dict):
            return {name: _array(name, [row[name] for row in predictions]) for name in predictions[0]}
        return {single: _array(single, predictions)}
    if "outputs" in answer:
        outputs = answer["outputs"]
        if isinstance(outputs, dict):
            return {name: _array(name, value) for name, value in outputs.items()}
        return {single: _array(single, outputs)}
    raise ServingError(f"The answer has neither 'predictions' nor 'outputs': {one_line(str(answer)[:200])}")


def _array(name, values):
    """Output `name`'s JSON numbers as an array: int64 for INT64_OUTPUTS, else float32 (JSON does not
    tell a float that happens to be whole from an integer)."""
    return np.asarray(values, np.int64 if name in INT64_OUTPUTS else np.float32)


# === gRPC: tensorflow.serving.PredictionService/Predict ===


def grpc_predict(target, model_name, signature, inputs, version=None, timeout=30.0):
    """Calls `signature` through TF Serving's gRPC PredictionService; returns {name: array}."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the protos import TensorFlow
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = predict_request(model_name, signature, inputs, version)
    options = [(f"grpc.max_{way}_message_length", MAX_GRPC_MESSAGE) for way in ("receive", "send")]
    try:
        with grpc.insecure_channel(target, options=options) as channel:
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    except grpc.RpcError as err:
        code, details = err.code(), one_line(err.details() or "")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ServingError(f"No answer from {target} within {timeout} s (gRPC DEADLINE_EXCEEDED)") from None
        if code == grpc.StatusCode.UNAVAILABLE:
            raise ServingError(f"Cannot reach {target}: {details}") from None
        raise ServingError(f"gRPC {code.name} from {target}: {details}") from None
    return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}


def predict_request(model_name, signature, inputs, version=None):
    """A tensorflow_serving PredictRequest for `signature` with `inputs` {name: array}."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(to_tensor_proto(value))
    return request


def _dtypes():
    """numpy dtype ↔ TensorProto DataType, for the dtypes DRAW's signatures use."""
    from tensorflow.core.framework import types_pb2

    return {
        np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
        np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
        np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
        np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
    }


def to_tensor_proto(value):
    """A TensorProto holding `value` (float32, float64, int32 or int64), with numpy only."""
    from tensorflow.core.framework import tensor_pb2

    array = np.asarray(value)
    if array.dtype not in _dtypes():
        raise ValueError(f"Unsupported dtype for a TensorProto: {array.dtype}")
    proto = tensor_pb2.TensorProto(dtype=_dtypes()[array.dtype][0])
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    proto.tensor_content = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return proto


def from_tensor_proto(proto):
    """The numpy array of a TensorProto, packed (`tensor_content`) or as repeated values."""
    by_enum = {enum: (dtype, field) for dtype, (enum, field) in _dtypes().items()}
    if proto.dtype not in by_enum:
        raise ServingError(f"Unsupported dtype in the answer: DataType {proto.dtype}")
    dtype, field = by_enum[proto.dtype]
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    values = np.asarray(getattr(proto, field), dtype)
    if values.size == 1 and math.prod(shape) != 1:  # one value stands for all (TensorProto's rule)
        values = np.full(math.prod(shape), values[0], dtype)
    return values.reshape(shape)
