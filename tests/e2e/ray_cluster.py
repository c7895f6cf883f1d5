"""``python -m tests.e2e.ray_cluster N``: a local Ray cluster of N nodes (1 CPU each) on 127.0.0.1.

Prints ``ADDRESS=<gcs address>`` once up, then runs until SIGINT/SIGTERM or stdin closes, and shuts
the cluster down (Ray's own processes, by the handles it started). A separate process so the test's
own interpreter never imports Ray with the wrong bind address (Ray reads the env var at import).
"""
import os
import signal
import sys

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # before ray is imported: bind 127.0.0.1 only
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token auth on a loopback test cluster (~/.ray/auth_token turns it on)


def main(n: int) -> None:
    from ray.cluster_utils import Cluster

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    try:
        for _ in range(n - 1):
            cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
        print(f"ADDRESS={cluster.address}", flush=True)
        sys.stdin.read()  # until the test closes our stdin (or signals us)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]))
