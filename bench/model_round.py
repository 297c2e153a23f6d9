"""Seconds per round with a large float32 model (default 100 MB), 2 sites, training
excluded (the script adds 1 in place). Compares with plain loopback TCP throughput
measured in this run: a round moves the model to each site and back.

Usage: make bench-model [MODEL_MB=100]   (ends with one JSON line of the figures)
"""
import json
import os
import statistics

from common import loopback_MBps, make_job, memcpy_MBps, run_simulate, tempdir


def main():
    mb = int(os.environ.get("MODEL_MB", "100"))
    clients, rounds_n = 2, 3
    work = tempdir("ember-bench-model-")
    job = make_job(work, "model-round", model_bytes=mb * 1_000_000, rounds=rounds_n, clients=clients)
    wall, rounds = run_simulate(job, clients, f"{work}/ws")
    per_round = [r["seconds"] for r in rounds]
    tcp = loopback_MBps()
    moved_MB = 2 * clients * mb  # down to each site and back: server <-> site <-> script doubles it again
    figures = {
        "bench": "model_round", "model_MB": mb, "clients": clients, "rounds": len(rounds),
        "round_s_median": round(statistics.median(per_round), 3),
        "job_wall_s": round(wall, 2),
        "raw_tcp_MBps": round(tcp, 1),
        "memcpy_MBps": round(memcpy_MBps(), 1),
        "tcp_bound_round_s": round(2 * moved_MB / tcp, 3),
    }
    print(f"round median {figures['round_s_median']} s; raw TCP {figures['raw_tcp_MBps']} MB/s; "
          f"a round crosses 4 hops x {clients} sites x {mb} MB -> TCP-bound {figures['tcp_bound_round_s']} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
