"""Records which process imported it, to tell preloading in the master from per-worker loads."""

import os

from tests.apps.testapp import echo

if os.environ.get("TESTAPP_IMPORT_LOG"):
    with open(os.environ["TESTAPP_IMPORT_LOG"], "a", encoding="utf-8") as _log:
        _log.write(f"{os.getpid()}\n")

app = echo
