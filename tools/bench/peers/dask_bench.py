#!/usr/bin/python3
"""Dask (distributed.LocalCluster, 4 worker processes of 1 thread each) on the workloads
of `tern bench latency`: submit -> task running (the function's own stamp) and
submit -> task process started (the function spawns tern-bench-stamp), from a running
client; 10,000 noop tasks (client.map) at 4 slots. Usage: dask_bench.py STAMP [DIR]"""
import os
import sys
import tempfile
import time

import common


def main():
    stamp = os.path.abspath(sys.argv[1])
    base = sys.argv[2] if len(sys.argv) > 2 else None
    from distributed import Client, LocalCluster, wait
    with tempfile.TemporaryDirectory(prefix="dask-bench-", dir=base) as d:
        path = os.path.join(d, "stamp")
        cluster = LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                               dashboard_address=None, local_directory=d)
        client = Client(cluster)
        try:
            client.submit(common.write_stamp, path, pure=False).result()
            common.read_stamp(path)
            for name, fn, args in (("submit_to_fn", common.write_stamp, (path,)),
                                   ("submit_to_started", common.run_stamp, (stamp, path))):
                v = []
                for _ in range(common.N_LAT):
                    t0 = time.time_ns()
                    fut = client.submit(fn, *args, pure=False)
                    v.append((common.read_stamp(path) - t0) / 1000)
                    fut.result()
                b50, b99 = common.raw_spawn_latency(stamp, path, common.N_LAT)
                common.bench_line(f"peers.dask.{name}.p50_us", common.pct(v, 0.5), "us", b50)
                common.bench_line(f"peers.dask.{name}.p99_us", common.pct(v, 0.99), "us", b99)
            n = common.N_NOOP
            t0 = time.monotonic()
            futs = client.map(common._noop, range(n), pure=False)
            wait(futs)
            rate = n / (time.monotonic() - t0)
            del futs
            common.bench_line("peers.dask.noop4.tasks", rate, "tasks/s",
                              common.raw_pool_rate(n))
        finally:
            client.close()
            cluster.close()


if __name__ == "__main__":
    main()
