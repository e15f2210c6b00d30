"""The environment Ray starts with for Serve's faster data plane.

Four of the switches Serve's throughput mode (``RAY_SERVE_THROUGHPUT_OPTIMIZED``) turns on, named one by one:
gRPC between Serve's proxy and the replicas and between replicas (instead of Ray actor calls), and user code and
the handles' routers on each replica's own event loop (no thread hop per streamed item). The mode's other parts
stay off. Its direct ingress (the gateway replica serving HTTP itself behind HAProxy): through HAProxy 2.8 a
client that disconnects mid-answer no longer cancels its generation, so the worker's slot stays taken until the
answer ends (tests/test_faults_ray.py catches it). Its log buffer: 1,000 request-path records held in memory,
which a replica that dies loses and an operator tailing a file waits for. Measured by ``make bench-path-cpu``
(benchmarks/results/serving/).

Serve reads these when its processes start, so they belong in the environment of whatever starts Ray:
``make serve``, ``ray start`` on every node, :func:`deployments.local.start_local`. An application's
``runtime_env`` is too late for the controller and the proxy. ``python -m deployments.serve_env`` prints them as
``NAME=value`` lines for ``env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

THROUGHPUT_ENV: Final = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_PROXY_USE_GRPC": "1",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}

# For a process that builds the app and then calls it through handles itself (tests, benchmarks): the handles it
# builds default to gRPC, and its own routers keep their separate loop (the loop of a caller such as a test's
# asyncio.run may close before Serve shuts the handle down).
BUILDER_ENV: Final = {name: value for name, value in THROUGHPUT_ENV.items() if "SEPARATE" not in name}


def without_serve_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with none of Serve's ``RAY_SERVE_*`` settings: how code from before these switches ran (the
    benchmarks' baselines), or a process that has not set them yet (tests)."""
    return {name: value for name, value in env.items() if not name.startswith("RAY_SERVE_")}


if __name__ == "__main__":
    print("\n".join(f"{name}={value}" for name, value in THROUGHPUT_ENV.items()))
