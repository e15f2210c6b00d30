"""The Ray Serve settings this application runs with: environment variables for every Ray process.

Ray Serve reads them when each of its processes starts (controller, proxy, replicas), so they belong in the
environment of whatever starts Ray: ``make serve`` exports them for ``serve run``; on a cluster, export them
before ``ray start`` on every node. ``serve_config.yaml`` repeats them in its ``runtime_env`` for replicas.

- ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``: Serve's high-throughput mode (Ray >= 2.56): deployment handles talk
  gRPC directly between replicas, and user code and the router run on each replica's main event loop instead
  of hopping threads for every streamed item. Measured with ``make bench-serving`` (benchmarks/results/serving).
- ``RAY_SERVE_ENABLE_DIRECT_INGRESS=0``: that mode would also make every gateway replica listen on a port of
  its own (30000+), which needs a load balancer in front; we keep Serve's HTTP proxy on ``http_options.port``.
"""

from __future__ import annotations

from typing import Final

SERVE_ENV: Final[dict[str, str]] = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
}
