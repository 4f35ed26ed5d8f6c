"""The HTTP/1.1 engine: an I/O-free parser, connections, and the event loop that feeds them."""
