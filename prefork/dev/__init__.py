"""Development features (`dev_mode`): reload on code change.

`watch` tells which of the application's Python files changed (inotify, or a scan of
modification times); `reload` decides when a change should replace the running code.
"""
