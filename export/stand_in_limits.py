"""What the stand-in server refuses, before it runs the model, and how many requests it runs at once.

Why: one REST request of 100,000 seeds to `generate_seeded` (a 689 KB body) took the stand-in to
13.3 GB peak RSS: the noise of every row, the model's activations, then the answer as Python
lists and JSON text, all proportional to the rows (~155 KB a row at the mnist preset). So a
request is checked against these limits (flags of stand_in_server.py) and refused with a one-line
message naming the limit:

    max_body_bytes     32 MiB  REST body; gRPC largest message received   → HTTP 413 / RESOURCE_EXHAUSTED
    max_rows           1024    rows (batch size) of any input              → HTTP 400 / INVALID_ARGUMENT
    max_answer_values  2**22   rows × the output values of one row         → HTTP 400 / INVALID_ARGUMENT
    max_concurrent     4       requests read, run and answered at once
    max_waiting        64      requests waiting, in arrival order; more    → HTTP 503 / RESOURCE_EXHAUSTED
    wait_seconds       30      the longest wait; then                      → HTTP 503 / RESOURCE_EXHAUSTED

The body cap fits 1024 rows of 28×28 images as JSON floats (~16 KB a row) with their seeds; noise
is 6,400 values a row at the mnist preset (~134 KB of JSON), so a `noise` request fits ~240 rows
and the `_seeded` signatures take larger batches. 1024 rows of `generate_seeded` at the mnist
preset raised the server's peak RSS by 182 MiB. An answer costs ~180 bytes of peak memory a value
(numpy, Python lists, JSON text): 325 rows of `draw` (16.7 M values: canvases are T×H×W a row)
took 2.9 GiB, so answers stop at 2**22 values (~0.7 GiB; 81 rows of `draw` at the mnist preset,
the whole 1024 of `generate`). The server's memory thus stays within about max_concurrent ×
0.7 GiB above the loaded model; `max_concurrent` + `max_waiting` bound its threads.
"""

import collections
import contextlib
import math
import threading
from dataclasses import dataclass, fields

GRPC_MESSAGE_CEILING = 2**31 - 1  # gRPC message sizes are int32


class RequestError(Exception):
    """A request the server refuses: an HTTP status (mapped to a gRPC code) and a message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """The stand-in's limits (see the module's docstring for the defaults' reasons)."""

    max_body_bytes: int = 32 * 2**20
    max_rows: int = 1024
    max_answer_values: int = 2**22
    max_concurrent: int = 4
    max_waiting: int = 64
    wait_seconds: float = 30.0

    def __post_init__(self):
        for field in fields(self):
            low, high = BOUNDS[field.name]
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ValueError(f"--{field.name.replace('_', '-')} must be between {low} and {high}. "
                                 f"Received: {value!r}")

    def grpc_options(self):
        """gRPC server options: messages received up to the body cap, answers up to the answer cap."""
        send = min(self.max_answer_values * 8 + 2**20, GRPC_MESSAGE_CEILING)  # 8 bytes: float64 at most
        return [("grpc.max_receive_message_length", self.max_body_bytes),
                ("grpc.max_send_message_length", send)]


# The values a user can mean: beyond these, a flag is a typo (a value of 0 or a 2**40-byte body).
BOUNDS = {
    "max_body_bytes": (1024, GRPC_MESSAGE_CEILING),
    "max_rows": (1, 2**20),
    "max_answer_values": (1, 2**28),
    "max_concurrent": (1, 64),
    "max_waiting": (0, 4096),
    "wait_seconds": (0.001, 3600.0),
}


# === The flags ===

FLAGS = [  # (flag, type, help); the field of Limits is the flag's name with underscores
    ("--max-body-bytes", int, "largest REST body, and largest gRPC message received, in bytes"),
    ("--max-rows", int, "most rows (batch size) per request"),
    ("--max-answer-values", int, "most output values per answer (rows x values per row)"),
    ("--max-concurrent", int, "requests run at once"),
    ("--max-waiting", int, "requests waiting for a slot; more are refused with HTTP 503"),
    ("--wait-seconds", float, "longest wait for a slot before HTTP 503"),
]


def _field(flag):
    return flag[2:].replace("-", "_")


def add_limit_flags(parser):
    """The limits as flags of an argparse parser, with Limits()'s defaults."""
    defaults = Limits()
    for flag, kind, help_text in FLAGS:
        parser.add_argument(flag, type=kind, default=getattr(defaults, _field(flag)),
                            help=f"{help_text} (default: %(default)s)")


def limits_from_args(args):
    """The Limits of parsed flags; ValueError (one line) for a value out of BOUNDS."""
    return Limits(**{_field(flag): getattr(args, _field(flag)) for flag, _, _ in FLAGS})


# === The size of a request ===


def declared_length(header):
    """The Content-Length a request declares, 0 when absent or unreadable (what to drain)."""
    try:
        return max(int(header or 0), 0)
    except ValueError:
        return 0


def body_length(header, limits):
    """The Content-Length of a REST request, once it is within `max_body_bytes`."""
    if header is None:
        raise RequestError(411, "The request needs a Content-Length header (chunked bodies are not read)")
    try:
        length = int(header)
    except ValueError:
        length = -1
    if length < 0:
        raise RequestError(400, f"Bad Content-Length: {header!r}")
    if length > limits.max_body_bytes:
        raise RequestError(413, f"The request body is {length:,} bytes; this server reads at most "
                                f"{limits.max_body_bytes:,} (--max-body-bytes). Send fewer rows per request, "
                                "or seeds (the _seeded signatures) in place of noise.")
    return length


def check_rows(shapes, limits):
    """The rows of a request ({input name: shape}), the largest first dimension; RequestError
    past `max_rows`."""
    rows = max((shape[0] for shape in shapes.values() if len(shape)), default=1)
    if rows > limits.max_rows:
        raise RequestError(400, f"The request has {rows:,} rows (batch size); this server takes at most "
                                f"{limits.max_rows:,} per request (--max-rows). Send several smaller requests.")
    return rows


def values_per_row(function):
    """The output values one row of a signature produces, from the outputs' static shapes."""
    shapes = [spec.shape for spec in function.structured_outputs.values()]
    return sum(math.prod(size or 1 for size in shape[1:]) for shape in shapes if shape.rank is not None)


def check_answer(function, signature_name, rows, limits):
    """RequestError if the answer of `rows` rows would exceed `max_answer_values`."""
    per_row = values_per_row(function)
    if rows * per_row > limits.max_answer_values:
        most = max(limits.max_answer_values // max(per_row, 1), 1)
        raise RequestError(400, f"The answer to {rows:,} rows of {signature_name!r} would hold {rows * per_row:,} "
                                f"values; this server answers at most {limits.max_answer_values:,} per request "
                                f"(--max-answer-values): send at most {most:,} rows of it per request.")


def check_tensor_proto(name, proto, limits):
    """The shape of a gRPC input, refused before it is unpacked if the values it declares would
    take more than `max_body_bytes` (a TensorProto may give one value for a whole shape)."""
    import tensorflow as tf

    try:
        itemsize = max(tf.dtypes.as_dtype(proto.dtype).size, 1)
    except (TypeError, ValueError):  # DT_INVALID, an unknown enum: the run refuses it later
        itemsize = 8
    shape = tuple(dim.size for dim in proto.tensor_shape.dim)
    if any(size < 0 for size in shape) or math.prod(shape) * itemsize > limits.max_body_bytes:
        raise RequestError(400, f"Input {name!r} declares shape {list(shape)}, more than the {limits.max_body_bytes:,} "
                                "bytes this server takes (--max-body-bytes)")
    return shape


# === How many at once ===


class Admission:
    """At most `max_concurrent` requests run at once; `max_waiting` more wait, in arrival order,
    each up to `wait_seconds`; any other is refused at once (HTTP 503), so that waiting costs no
    memory (a waiting REST request's body is not read yet) and no client waits without end."""

    def __init__(self, limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._free = limits.max_concurrent
        self._queue = collections.deque()  # an Event per waiting request, the oldest first
        self._running = 0
        self.peak_running = 0  # the most requests that ever ran at once, for tests

    @contextlib.contextmanager
    def slot(self):
        """The block runs holding one of the `max_concurrent` slots; RequestError(503) if none comes."""
        self._acquire()
        with self._lock:
            self._running += 1
            self.peak_running = max(self.peak_running, self._running)
        try:
            yield
        finally:
            self._release()

    def _acquire(self):
        limits = self.limits
        with self._lock:
            if self._free and not self._queue:
                self._free -= 1
                return
            if len(self._queue) >= limits.max_waiting:
                raise RequestError(503, f"The server is busy: {limits.max_concurrent} requests running and "
                                        f"{limits.max_waiting} waiting (--max-concurrent, --max-waiting). Retry later.")
            turn = threading.Event()
            self._queue.append(turn)
        if turn.wait(limits.wait_seconds):
            return  # a finishing request handed its slot over
        with self._lock:
            if turn.is_set():  # handed over as the wait ran out
                return
            self._queue.remove(turn)
        raise RequestError(503, f"The server is busy: no request slot came free within {limits.wait_seconds:g} s "
                                "(--wait-seconds). Retry later.")

    def _release(self):
        with self._lock:
            self._running -= 1
            if self._queue:
                self._queue.popleft().set()  # the slot goes to the oldest waiting request
            else:
                self._free += 1
