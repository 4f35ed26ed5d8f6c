"""`prefork nginx --server-name NAME [--tls-cert F --tls-key F]`."""

from __future__ import annotations

import sys

from prefork.config.loader import Loaded
from prefork.ops.nginx import Site, render

EXIT_USAGE = 2


def nginx(loaded: Loaded, site: Site) -> int:
    if bool(site.tls_cert) != bool(site.tls_key):
        print("prefork: error: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    print(render(loaded.settings, site), end="")
    if not loaded.settings.proxy_mode:
        print("prefork: reminder: proxy_mode is off; set proxy_mode = True behind nginx",
              file=sys.stderr)
    return 0
