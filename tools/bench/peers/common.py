"""What the peer benchmarks share: the BENCH line, percentiles, stamps, a free port and
the raw baselines measured from the same Python client."""
import multiprocessing
import os
import socket
import time

N_LAT = int(os.environ.get("PEER_LAT_RUNS", "200"))
N_NOOP = int(os.environ.get("PEER_NOOP_TASKS", "10000"))


def bench_line(name, value, unit, baseline):
    ratio = value / baseline if baseline else 0.0
    print(f"BENCH name={name} value={value:.0f} unit={unit} baseline={baseline:.0f} "
          f"ratio={ratio:.2f}", flush=True)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))] if v else 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_stamp(path, timeout=10.0):
    """The ns the task wrote into path (then removed); 0 after timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(path) as f:
                v = int(f.read().strip() or 0)
            os.unlink(path)
            return v
        except FileNotFoundError:
            time.sleep(0.0001)
    return 0


def write_stamp(path):
    """The task function's own stamp (no process start): as tern-bench-stamp writes it."""
    now = time.time_ns()
    with open(path + ".tmp", "w") as f:
        f.write(f"{now}\n")
    os.rename(path + ".tmp", path)


def run_stamp(stamp, path):
    """The task's process: tern-bench-stamp started from the task function."""
    pid = os.posix_spawn(stamp, [stamp, path], os.environ)
    os.waitpid(pid, 0)


def raw_spawn_latency(stamp, path, n):
    """Baseline: posix_spawn of the same program from this client, p50 and p99 in us."""
    v = []
    for _ in range(n):
        t0 = time.time_ns()
        pid = os.posix_spawn(stamp, [stamp, path], os.environ)
        v.append((read_stamp(path) - t0) / 1000)
        os.waitpid(pid, 0)
    return pct(v, 0.5), pct(v, 0.99)


def _noop(_):
    return None


def raw_pool_rate(n):
    """Baseline: a multiprocessing pool of 4 processes, one task per message: tasks/s."""
    with multiprocessing.Pool(4) as pool:
        pool.map(_noop, range(100), chunksize=1)
        t0 = time.monotonic()
        pool.map(_noop, range(n), chunksize=1)
        return n / (time.monotonic() - t0)
