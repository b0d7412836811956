#!/usr/bin/python3
"""Celery with a Redis broker (redis-server on a free loopback port in a temp dir, its
defaults: no fsync) and one prefork worker of 4 processes, on the workloads of
`tern bench latency`: submit -> task running (the function's own stamp), submit -> task
process started (the function spawns tern-bench-stamp), from a running client; 10,000
noop tasks at 4 slots (each noop INCRs a Redis counter the client polls: results are
off). Usage: celery_bench.py STAMP [DIR]"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import common

TASKS = '''
import os, sys
sys.path.insert(0, {here!r})
import common, redis
from celery import Celery
app = Celery("bench", broker="redis://127.0.0.1:{port}/0")
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False
counter = redis.Redis(host="127.0.0.1", port={port})

@app.task
def stamp_fn(path):
    common.write_stamp(path)

@app.task
def stamp_proc(stamp, path):
    common.run_stamp(stamp, path)

@app.task
def noop():
    counter.incr("done")
'''


def wait_port(port, timeout=10):
    import redis
    r = redis.Redis(host="127.0.0.1", port=port)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            r.ping()
            return r
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("celery_bench: redis-server did not start")


def measure(tasks, r, stamp, path):
    for name, task, args in (("submit_to_fn", tasks.stamp_fn, (path,)),
                             ("submit_to_started", tasks.stamp_proc, (stamp, path))):
        v = []
        for _ in range(common.N_LAT):
            t0 = time.time_ns()
            task.delay(*args)
            v.append((common.read_stamp(path) - t0) / 1000)
            time.sleep(0.002)  # let the task return before the next
        b50, b99 = common.raw_spawn_latency(stamp, path, common.N_LAT)
        common.bench_line(f"peers.celery.{name}.p50_us", common.pct(v, 0.5), "us", b50)
        common.bench_line(f"peers.celery.{name}.p99_us", common.pct(v, 0.99), "us", b99)
    n = common.N_NOOP
    r.set("done", 0)
    t0 = time.monotonic()
    for _ in range(n):
        tasks.noop.delay()
    while int(r.get("done") or 0) < n:
        time.sleep(0.002)
    rate = n / (time.monotonic() - t0)
    common.bench_line("peers.celery.noop4.tasks", rate, "tasks/s", common.raw_pool_rate(n))


def main():
    stamp = os.path.abspath(sys.argv[1])
    base = sys.argv[2] if len(sys.argv) > 2 else None
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory(prefix="celery-bench-", dir=base) as d:
        port = common.free_port()
        procs = []
        try:
            procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
                 "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
            r = wait_port(port)
            with open(os.path.join(d, "bench_tasks.py"), "w") as f:
                f.write(TASKS.format(here=here, port=port))
            log = open(os.path.join(d, "worker.log"), "w")
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "bench_tasks", "worker",
                 "--pool=prefork", "--concurrency=4", "--loglevel=warning",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=d, stdout=log, stderr=log))
            sys.path.insert(0, d)
            import bench_tasks
            path = os.path.join(d, "stamp")
            bench_tasks.stamp_fn.delay(path)  # once the worker takes tasks
            if not common.read_stamp(path, timeout=60):
                raise SystemExit("celery_bench: the worker did not start (see worker.log)")
            measure(bench_tasks, r, stamp, path)
        finally:
            for p in reversed(procs):
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    main()
