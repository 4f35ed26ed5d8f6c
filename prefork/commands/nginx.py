"""`prefork nginx --server-name NAME [--tls-cert F --tls-key F] [--upstream HOST[:PORT]...]`."""

from __future__ import annotations

import dataclasses
import sys

from prefork.config.loader import Loaded
from prefork.ops.nginx import Site, render
from prefork.ops.upstreams import UpstreamError, parse_upstreams

EXIT_USAGE = 2


def nginx(loaded: Loaded, site: Site, upstreams: list[str]) -> int:
    if bool(site.tls_cert) != bool(site.tls_key):
        return _usage("--tls-cert and --tls-key go together")
    if site.failover_timeout < 1:
        return _usage(
            f"--failover-timeout {site.failover_timeout}: expected a whole number of seconds >= 1"
        )
    try:
        s = loaded.settings
        hosts = parse_upstreams(upstreams, s.http_port, s.gevent_port if s.multiprocessing else 0)
        site = dataclasses.replace(site, upstreams=hosts)
    except UpstreamError as exc:
        return _usage(str(exc))
    print(render(loaded.settings, site), end="")
    if not loaded.settings.proxy_mode:
        print(
            "prefork: reminder: proxy_mode is off; set proxy_mode = True behind nginx",
            file=sys.stderr,
        )
    return 0


def _usage(message: str) -> int:
    print(f"prefork: error: {message}", file=sys.stderr)
    return EXIT_USAGE
