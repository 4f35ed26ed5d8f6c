"""An application that cannot be imported: drives the crash-loop protection."""

raise RuntimeError("this application is broken on purpose")
