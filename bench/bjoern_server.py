"""bjoern serving an application with N forked processes on one listening socket (bjoern
itself is single-process): python bjoern_server.py MODULE:APP PORT WORKERS."""

from __future__ import annotations

import importlib
import sys

import bjoern
from forked import run_forked

if __name__ == "__main__":
    ref, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    module, _, name = ref.partition(":")
    app = getattr(importlib.import_module(module), name)
    bjoern.listen(app, "127.0.0.1", port)
    run_forked(workers, bjoern.run)
