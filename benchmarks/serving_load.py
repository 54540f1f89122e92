"""The stand-in server in a process of its own, under concurrent REST clients: latency and memory.

Shared by benchmarks/serving_latency.py (`--clients`) and tests/test_serving_load.py. The server
runs as `python export/stand_in_server.py` in its own process, as TF Serving would, so that its
memory (/proc/PID/status: VmHWM, the peak resident set, and VmRSS) is the server's alone and the
clients' threads do not share its interpreter.
"""

import json
import math
import os
import re
import select
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

STAND_IN = Path(__file__).resolve().parents[1] / "export" / "stand_in_server.py"
ADDRESS = re.compile(r"REST (http://[^,\s]+)(?:, gRPC (\S+))?")


class ServerProcess:
    """The stand-in on free ports of 127.0.0.1 while in the `with` block; `flags` go to its command line."""

    def __init__(self, model_base_path, *flags, script=STAND_IN, start_seconds=300):
        self.command = [sys.executable, str(script), "--model-base-path", str(model_base_path), "--rest-api-port", "0",
                        "--port", "0", *map(str, flags)]
        self.start_seconds = start_seconds
        self.process = None

    def __enter__(self):
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        ready, _, _ = select.select([self.process.stdout], [], [], self.start_seconds)
        line = self.process.stdout.readline() if ready else ""
        match = ADDRESS.search(line)
        if not match:
            self.__exit__()
            raise RuntimeError(f"The stand-in did not start: {line!r}; stderr: {self.stderr()[-2000:]}")
        self.rest_url, self.grpc_target = match.group(1), match.group(2)
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def alive(self):
        return self.process.poll() is None

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read()

    def memory(self):
        """{"VmHWM": peak resident bytes so far, "VmRSS": resident bytes now} of the server."""
        with open(f"/proc/{self.process.pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        return {key: int(fields[key].split()[0]) * 1024 for key in ("VmHWM", "VmRSS")}


def seeds_body(count, start=0, signature="generate_seeded"):
    """A columnar predict request of `count` seeds from `start`, as JSON bytes."""
    return json.dumps({"signature_name": signature, "inputs": {"seed": list(range(start, start + count))}}).encode()


def post(url, body, model="draw", timeout=120):
    """(HTTP status, the JSON answer or an error text, seconds) of one predict request; status 0
    when no HTTP answer came (a refused or dropped connection, a timeout)."""
    request = urllib.request.Request(f"{url}/v1/models/{model}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read()
    except (urllib.error.URLError, OSError) as err:
        return 0, f"{type(err).__name__}: {err}", time.perf_counter() - start
    seconds = time.perf_counter() - start
    try:
        return status, json.loads(text), seconds
    except ValueError:
        return status, text[:200].decode(errors="replace"), seconds


def fire(url, clients, requests, rows=1, signature="generate_seeded", timeout=120):
    """`clients` threads, started together, each sending `requests` requests of `rows` seeds one
    after the other; returns [(status, seconds)] of every request (the seeds all differ)."""
    barrier = threading.Barrier(clients)
    results = [[] for _ in range(clients)]

    def client(k):
        barrier.wait()
        for i in range(requests):
            status, _, seconds = post(url, seeds_body(rows, (k * requests + i) * rows, signature), timeout=timeout)
            results[k].append((status, seconds))

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [result for per_client in results for result in per_client]


def percentile(values, q):
    """The nearest-rank q-th percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)]
