"""Round overhead with a tiny model: 2 sites, 20 rounds, no training. Compares the
server's seconds per round with a plain loopback request/reply measured in this run.

Usage: make bench-round   (ends with one JSON line of the figures)
"""
import json
import statistics

from common import loopback_rtt_ms, make_job, run_simulate, tempdir


def main():
    work = tempdir("ember-bench-round-")
    job = make_job(work, "round-overhead", model_bytes=1024, rounds=20, clients=2)
    wall, rounds = run_simulate(job, 2, f"{work}/ws")
    per_round = [r["seconds"] for r in rounds]
    rtt = loopback_rtt_ms()
    figures = {
        "bench": "round_overhead", "clients": 2, "rounds": len(rounds), "model_bytes": 1024,
        "round_ms_median": round(statistics.median(per_round) * 1000, 2),
        "round_ms_p90": round(sorted(per_round)[int(0.9 * (len(per_round) - 1))] * 1000, 2),
        "job_wall_s": round(wall, 2),
        "raw_tcp_rtt_ms": round(rtt, 3),
    }
    print(f"{'round median':>16}: {figures['round_ms_median']} ms (p90 {figures['round_ms_p90']} ms)")
    print(f"{'raw TCP RTT':>16}: {figures['raw_tcp_rtt_ms']} ms")
    print(f"{'whole job':>16}: {figures['job_wall_s']} s incl. start-up of 2 Python scripts")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
