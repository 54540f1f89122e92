"""What the stand-in server (stand_in_server.py) answers, whatever the transport: the versions of
the model, each loaded with plain `tf.saved_model.load`; a REST body or a gRPC PredictRequest as
arrays, checked against the limits (stand_in_limits.py) before the model runs; the signature's
run; and the answer, in TF Serving's formats. A request it refuses raises RequestError.
"""

import os
import re
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __package__:  # imported as export.stand_in_predict
    from .stand_in_limits import RequestError, check_answer, check_rows, check_tensor_proto
else:  # imported by stand_in_server.py run as a script
    from stand_in_limits import RequestError, check_answer, check_rows, check_tensor_proto


# === The models ===


class Servables:
    """The versions of one model in a TF Serving model folder, each loaded on first use."""

    def __init__(self, export_dir, model_name):
        self.export_dir = export_dir
        self.model_name = model_name
        self._loaded = {}
        self._lock = threading.Lock()

    def versions(self):
        return sorted(int(name) for name in os.listdir(self.export_dir) if re.fullmatch(r"\d+", name))

    def signature(self, model_name, version, signature_name):
        """(the concrete function, the version it came from); RequestError when not found."""
        if model_name != self.model_name:
            raise RequestError(404, f"Servable not found for request: Latest({model_name})")
        versions = self.versions()
        if version is None and versions:
            version = versions[-1]
        if version not in versions:
            raise RequestError(404, f"Servable not found for request: Specific({model_name}, {version})")
        with self._lock:
            if version not in self._loaded:
                self._loaded[version] = tf.saved_model.load(os.path.join(self.export_dir, str(version)))
        signatures = self._loaded[version].signatures
        if signature_name not in signatures:
            raise RequestError(400, f'Serving signature name: "{signature_name}" not found in signature def')
        return signatures[signature_name], version


def input_specs(function):
    """{input name: TensorSpec} of a signature function."""
    return dict(function.structured_input_signature[1])


def run_signature(function, arrays):
    """Calls a signature with {name: numpy array}; returns {name: numpy array}."""
    specs = input_specs(function)
    if set(arrays) != set(specs):  # TF Serving's message (predict_util.cc)
        braces = lambda names: "{" + ",".join(sorted(names)) + "}"
        raise RequestError(400, (
            f"input size does not match signature: {len(arrays)}!={len(specs)} len({braces(arrays)}) != "
            f"len({braces(specs)}). Sent extra: {braces(set(arrays) - set(specs))}. "
            f"Missing but required: {braces(set(specs) - set(arrays))}."
        ))
    for name, array in arrays.items():
        if array.dtype != specs[name].dtype.as_numpy_dtype:
            raise RequestError(400, f"Expects arg {name} to be {specs[name].dtype.name} but {array.dtype} is provided")
    try:
        outputs = function(**{name: tf.constant(array) for name, array in arrays.items()})
    except tf.errors.InvalidArgumentError as err:
        raise RequestError(400, status_message(err)) from None
    except tf.errors.OpError as err:
        raise RequestError(500, status_message(err)) from None
    return {name: value.numpy() for name, value in outputs.items()}


def status_message(err):
    """TensorFlow's status message, as TF Serving returns it: without the header Python adds."""
    lines = err.message.splitlines()
    header = ("Graph execution error", "Detected at node", "<stack traces unavailable>", " ")
    while lines and (not lines[0].strip() or lines[0].startswith(header)):
        lines.pop(0)
    return "\n".join(lines) or err.message


# === REST requests ===


def json_to_array(value, dtype, name):
    """A JSON value as an array of the signature's dtype; integers only for an integer input."""
    try:
        array = np.asarray(value)
        if dtype.is_integer and array.size and array.dtype.kind not in "iu":
            raise ValueError(f"is not of expected type: {dtype.name} (received {array.dtype.name} values)")
        return array.astype(dtype.as_numpy_dtype)
    except (ValueError, TypeError) as err:
        raise RequestError(400, f"Failed to process input {name!r} as {dtype.name}: {err}") from None


def rest_inputs(body, dtypes):
    """{name: array} from a predict request body, row ("instances") or columnar ("inputs").

    `dtypes` is {input name: tf.DType} of the signature.
    """
    if ("instances" in body) == ("inputs" in body):
        raise RequestError(400, "JSON Value: must have exactly one of 'instances' or 'inputs'")
    if "inputs" in body:
        columns = body["inputs"]
        if not isinstance(columns, dict):  # a single input, given by value
            columns = {name: columns for name in dtypes} if len(dtypes) == 1 else {"inputs": columns}
        return {name: json_to_array(value, dtypes.get(name, tf.float32), name) for name, value in columns.items()}
    rows = body["instances"]
    if not isinstance(rows, list):
        raise RequestError(400, "JSON Value: 'instances' must be a list")
    if rows and all(isinstance(row, dict) for row in rows):
        names = set(rows[0])
        if any(set(row) != names for row in rows):
            raise RequestError(400, "Failed to process 'instances': every instance must have the same named inputs")
        return {name: json_to_array([row[name] for row in rows], dtypes.get(name, tf.float32), name) for name in names}
    if len(dtypes) != 1:
        raise RequestError(400, f"'instances' must be objects naming the inputs {sorted(dtypes)}")
    ((name, dtype),) = dtypes.items()
    return {name: json_to_array(rows, dtype, name)}


def rest_answer(outputs, rows):
    """{"predictions": ...} (row format) or {"outputs": ...}; one output goes unnamed."""
    if not rows:
        return {"outputs": next(iter(outputs.values())).tolist() if len(outputs) == 1 else
                {name: value.tolist() for name, value in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values())).tolist()}
    count = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in outputs.items()} for i in range(count)]}


def rest_predict(servables, model_name, version, body, limits):
    """The JSON answer to a predict request, or RequestError (a request past `limits` included)."""
    if not isinstance(body, dict):
        raise RequestError(400, "JSON Value: the request must be a JSON object")
    signature_name = body.get("signature_name", "serving_default")
    function, _ = servables.signature(model_name, version, signature_name)
    dtypes = {name: spec.dtype for name, spec in input_specs(function).items()}
    arrays = rest_inputs(body, dtypes)
    rows = check_rows({name: array.shape for name, array in arrays.items()}, limits)
    check_answer(function, signature_name, rows, limits)
    return rest_answer(run_signature(function, arrays), rows="instances" in body)


def model_status(servables, model_name, version):
    """GET /v1/models/NAME[/versions/N]: the versions available."""
    versions = servables.versions() if model_name == servables.model_name else []
    versions = [v for v in versions if version is None or v == version]
    if not versions:
        raise RequestError(404, f"Could not find any versions of model {model_name}")
    ok = {"error_code": "OK", "error_message": ""}
    return {"model_version_status": [{"version": str(v), "state": "AVAILABLE", "status": ok} for v in versions]}


# === gRPC requests ===


def grpc_inputs(request, function, signature_name, limits):
    """{name: array} of a PredictRequest, once the shapes its tensors declare fit `limits`."""
    shapes = {name: check_tensor_proto(name, proto, limits) for name, proto in request.inputs.items()}
    check_answer(function, signature_name, check_rows(shapes, limits), limits)
    try:
        return {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    except (ValueError, TypeError) as err:  # a tensor_content that does not fill its shape, ...
        raise RequestError(400, f"Cannot read the input tensors: {err}") from None


def grpc_predict(servables, request, limits):
    """The PredictResponse to a PredictRequest, or RequestError (a request past `limits` included)."""
    from tensorflow_serving.apis import predict_pb2

    spec = request.model_spec
    version = spec.version.value if spec.HasField("version") else None
    signature_name = spec.signature_name or "serving_default"
    function, version = servables.signature(spec.name, version, signature_name)
    outputs = run_signature(function, grpc_inputs(request, function, signature_name, limits))
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = spec.name
    answer.model_spec.version.value = version
    answer.model_spec.signature_name = signature_name
    for name, value in outputs.items():
        if not request.output_filter or name in request.output_filter:
            answer.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return answer
