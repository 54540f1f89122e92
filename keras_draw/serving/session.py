"""A SavedModel run the way TensorFlow Serving runs it: its loader and Predict, through TensorFlow's C API.

`TF_LoadSessionFromSavedModel` is the C++ `LoadSavedModel` of TF Serving's SavedModelBundle: it
imports the MetaGraphDef tagged "serve" into a new session, restores the variables through the
saver_def's restore op and runs the main op. `predict` then does what TF Serving's Predict does
(predict_util.cc): it finds the signature, checks the request's input names against it (not their
shapes) and runs the session (`TF_SessionRun`), feeding each input tensor by name, with a timeout.

Python's `tf.compat.v1.Session` would not do: it refuses to feed a tensor whose shape differs from
the placeholder's declared shape, where TF Serving hands it to the graph. The C API is in the
TensorFlow wheel (libtensorflow_cc), so this needs nothing beyond TensorFlow.

    with ServingSession("serving/draw/1") as session:
        outputs = session.predict("generate_seeded", {"seed": np.array([1, 2])})  # {name: numpy array}

A refused request raises `SessionError` with TensorFlow's status code name and message.
"""

import ctypes
import glob
import os

import numpy as np

# numpy dtype <-> TF_DataType (= tensorflow's DataType enum), for the dtypes a signature may use.
DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3, np.dtype(np.int64): 9}
CODES = {1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
         8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE"}


class SessionError(Exception):
    """A refused request: `code`, TensorFlow's status code name (e.g. "INVALID_ARGUMENT"), and `message`."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _Output(ctypes.Structure):  # TF_Output
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


class _Buffer(ctypes.Structure):  # TF_Buffer
    _fields_ = [("data", ctypes.c_void_p), ("length", ctypes.c_size_t), ("data_deallocator", ctypes.c_void_p)]


def _library():
    """libtensorflow_cc from the TensorFlow wheel (.so.2 on Linux, .2.dylib on macOS), typed."""
    import tensorflow as tf  # here, not at import: a command silences TensorFlow's start first

    folder = os.path.dirname(tf.__file__)
    paths = glob.glob(os.path.join(folder, "libtensorflow_cc.so.2")) + glob.glob(os.path.join(folder, "libtensorflow_cc.2*"))
    if not paths:
        raise OSError(f"TensorFlow's C API library (libtensorflow_cc) is not in {folder}")
    lib = ctypes.CDLL(paths[0])
    p, i, buffer = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_Buffer)
    for name, restype, argtypes in [
        ("TF_NewStatus", p, []), ("TF_DeleteStatus", None, [p]), ("TF_GetCode", i, [p]),
        ("TF_Message", ctypes.c_char_p, [p]),
        ("TF_NewGraph", p, []), ("TF_DeleteGraph", None, [p]), ("TF_GraphOperationByName", p, [p, ctypes.c_char_p]),
        ("TF_NewSessionOptions", p, []), ("TF_DeleteSessionOptions", None, [p]),
        ("TF_NewBuffer", buffer, []), ("TF_NewBufferFromString", buffer, [ctypes.c_char_p, ctypes.c_size_t]),
        ("TF_DeleteBuffer", None, [buffer]),
        ("TF_LoadSessionFromSavedModel", p, [p, buffer, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), i, p,
                                             buffer, p]),
        ("TF_SessionRun", None, [p, buffer, ctypes.POINTER(_Output), ctypes.POINTER(p), i, ctypes.POINTER(_Output),
                                 ctypes.POINTER(p), i, p, i, p, p]),
        ("TF_CloseSession", None, [p, p]), ("TF_DeleteSession", None, [p, p]),
        ("TF_AllocateTensor", p, [i, ctypes.POINTER(ctypes.c_int64), i, ctypes.c_size_t]),
        ("TF_DeleteTensor", None, [p]), ("TF_TensorData", p, [p]), ("TF_TensorByteSize", ctypes.c_size_t, [p]),
        ("TF_TensorType", i, [p]), ("TF_NumDims", i, [p]), ("TF_Dim", ctypes.c_int64, [p, i]),
    ]:
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


class ServingSession:
    """The SavedModel version folder `path`, loaded with the tag "serve" as TF Serving loads it.

    `signatures` is {name: SignatureDef} of the MetaGraphDef the loader returned. `predict` may be
    called from several threads at once (a TensorFlow session runs concurrent steps).
    """

    def __init__(self, path):
        from tensorflow.core.protobuf import meta_graph_pb2

        self._lib = lib = _library()
        self._graph, self._session = lib.TF_NewGraph(), None
        options, meta_graph, status = lib.TF_NewSessionOptions(), lib.TF_NewBuffer(), lib.TF_NewStatus()
        try:
            tags = (ctypes.c_char_p * 1)(b"serve")
            self._session = lib.TF_LoadSessionFromSavedModel(options, None, os.fspath(path).encode(), tags, 1,
                                                             self._graph, meta_graph, status)
            self._check(status)
            data = ctypes.string_at(meta_graph.contents.data, meta_graph.contents.length)
            self.signatures = dict(meta_graph_pb2.MetaGraphDef.FromString(data).signature_def)
        except BaseException:
            self.close()
            raise
        finally:
            lib.TF_DeleteSessionOptions(options)
            lib.TF_DeleteBuffer(meta_graph)
            lib.TF_DeleteStatus(status)

    def _check(self, status):
        code = self._lib.TF_GetCode(status)
        if code != 0:
            raise SessionError(CODES.get(code, f"code {code}"), self._lib.TF_Message(status).decode(errors="replace"))

    def _tensor(self, tensor_name):
        """The TF_Output of a graph tensor "op:index"."""
        op_name, _, index = tensor_name.partition(":")
        return _Output(self._lib.TF_GraphOperationByName(self._graph, op_name.encode()), int(index or 0))

    def predict(self, signature_name, inputs, timeout_in_ms=0):
        """{output name: array} of `signature_name` for `inputs` {input name: array}, as TF Serving's
        Predict answers; a positive `timeout_in_ms` bounds the run (DEADLINE_EXCEEDED)."""
        from tensorflow.core.protobuf import config_pb2

        signature = self.signatures.get(signature_name or "serving_default")
        if signature is None:
            raise SessionError("FAILED_PRECONDITION", f'Serving signature key "{signature_name}" not found.')
        sent, expected = set(inputs), set(signature.inputs)
        if sent != expected:
            braces = lambda names: "{" + ",".join(sorted(names)) + "}"
            raise SessionError("INVALID_ARGUMENT", (
                f"input size does not match signature: {len(sent)}!={len(expected)} len({braces(sent)}) != "
                f"len({braces(expected)}). Sent extra: {braces(sent - expected)}. "
                f"Missing but required: {braces(expected - sent)}."))
        names = sorted(signature.outputs)
        feeds = [self._tensor(signature.inputs[name].name) for name in inputs]
        fetches = [self._tensor(signature.outputs[name].name) for name in names]
        lib, status = self._lib, self._lib.TF_NewStatus()
        options = config_pb2.RunOptions(timeout_in_ms=timeout_in_ms).SerializeToString()
        options = lib.TF_NewBufferFromString(options, len(options))
        values = [_to_tensor(lib, value) for value in inputs.values()]
        results = (ctypes.c_void_p * len(fetches))()
        try:
            lib.TF_SessionRun(self._session, options, (_Output * len(feeds))(*feeds),
                              (ctypes.c_void_p * len(values))(*values), len(feeds), (_Output * len(fetches))(*fetches),
                              results, len(fetches), None, 0, None, status)
            self._check(status)
            return {name: _from_tensor(lib, results[k]) for k, name in enumerate(names)}
        finally:
            for tensor in [*values, *results]:
                if tensor:
                    lib.TF_DeleteTensor(tensor)
            lib.TF_DeleteBuffer(options)
            lib.TF_DeleteStatus(status)

    def close(self):
        lib, status = self._lib, self._lib.TF_NewStatus()
        if self._session:
            lib.TF_CloseSession(self._session, status)
            lib.TF_DeleteSession(self._session, status)
            self._session = None
        if self._graph:
            lib.TF_DeleteGraph(self._graph)
            self._graph = None
        lib.TF_DeleteStatus(status)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _to_tensor(lib, value):
    array = np.require(value, requirements="C")  # (np.ascontiguousarray would make a scalar 1-D)
    if array.dtype not in DTYPES:
        raise SessionError("INVALID_ARGUMENT", f"Unsupported dtype: {array.dtype}")
    dims = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
    tensor = lib.TF_AllocateTensor(DTYPES[array.dtype], dims, array.ndim, array.nbytes)
    ctypes.memmove(lib.TF_TensorData(tensor), array.ctypes.data, array.nbytes)
    return tensor


def _from_tensor(lib, tensor):
    dtype = {code: dtype for dtype, code in DTYPES.items()}[lib.TF_TensorType(tensor)]
    shape = [lib.TF_Dim(tensor, k) for k in range(lib.TF_NumDims(tensor))]
    data = ctypes.string_at(lib.TF_TensorData(tensor), lib.TF_TensorByteSize(tensor))
    return np.frombuffer(data, dtype).reshape(shape).copy()
