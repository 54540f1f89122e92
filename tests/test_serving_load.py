"""The stand-in server under load, in a process of its own (benchmarks/serving_load.py): 50
concurrent clients all answered, requests too large refused (the export's row cap, the stand-in's
body limit), the server's peak memory bounded; and benchmarks/serving_latency.py's figures.

The memory bound is loose on purpose (256 MiB over the loaded model): the load itself adds a few
MiB, while without the row cap one request of 100,000 seeds to this tiny model took a server to
several GB (its answer alone is 78 M floats as JSON).
"""

import importlib.util
import re
import threading
from pathlib import Path

import pytest

from keras_draw import Draw, serving
from keras_draw.serving import Client, ServingError

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CLIENTS, REQUESTS, ROWS = 50, 8, 4


def load(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """A tiny DRAW exported as version 1 (the same recipe as tests/test_client.py's server)."""
    folder = tmp_path_factory.mktemp("serving") / "draw"
    serving.export(Draw.from_preset("tiny", seed=0), folder)
    return folder


@pytest.mark.slow
def test_fifty_concurrent_clients_are_answered_while_huge_requests_are_refused(export_dir):
    harness = load("serving_load")
    with harness.ServerProcess(export_dir) as server:
        assert harness.post(server.rest_url, harness.seeds_body(ROWS))[0] == 200  # the model is loaded
        before = server.memory()["VmRSS"]
        huge = {}

        def huge_requests():  # sent while the clients run
            huge["rest"] = harness.post(server.rest_url, harness.seeds_body(100_000))  # 689 KB
            huge["body"] = harness.post(server.rest_url, b" " * (64 * 2**20 + 1))
            try:
                Client(grpc=server.grpc_target, timeout=120).generate(100_000, seed=0)
            except ServingError as err:
                huge["grpc"] = str(err)

        sender = threading.Thread(target=huge_requests)
        sender.start()
        results = harness.fire(server.rest_url, CLIENTS, REQUESTS, rows=ROWS)
        sender.join()
        peak = server.memory()["VmHWM"]
        assert server.alive(), server.stderr()[-3000:]
    assert [status for status, _ in results] == [200] * CLIENTS * REQUESTS
    status, answer, _ = huge["rest"]
    assert status == 400 and answer["error"].startswith("assertion failed: [seed has more rows than the 1024 this "
                                                        "model serves per request")
    status, answer, _ = huge["body"]
    assert status == 413 and "Content-Length of at most 67,108,864 bytes" in answer["error"]
    assert re.match(r"gRPC INVALID_ARGUMENT .*seed has more rows than the 1024", huge["grpc"])
    assert peak - before < 256 * 2**20, (before, peak)


@pytest.mark.slow
def test_latency_benchmark_prints_p50_and_p99_under_load(capsys):
    benchmark = load("serving_latency")
    assert benchmark.main(["--preset", "tiny", "--batch-sizes", "1", "--repeats", "2", "--warmup", "1",
                           "--clients", "4", "--requests", "3", "--load-batch", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3].startswith("REST generate_seeded through the stand-in server") and "4 concurrent clients" in lines[-3]
    assert lines[-2].split()[:4] == ["clients", "p50", "ms", "p99"]
    figures = lines[-1].split()
    assert figures[0] == "4" and all(float(value) > 0 for value in figures[1:5])
    assert lines[-1].endswith("MiB") and "200: 12;" in lines[-1]  # every request answered


def test_the_benchmark_refuses_load_flags_no_user_can_mean(capsys):
    benchmark = load("serving_latency")
    with pytest.raises(SystemExit) as exit_:
        benchmark.parse_args(["--clients", "-1"])
    assert exit_.value.code == 2 and "--clients must be from 0 to 10000" in capsys.readouterr().err


def test_percentiles_are_nearest_rank():
    harness = load("serving_load")
    values = list(range(1, 101))
    assert (harness.percentile(values, 50), harness.percentile(values, 99), harness.percentile(values, 100)) == (50, 99, 100)
    assert harness.percentile([3.0], 99) == 3.0
