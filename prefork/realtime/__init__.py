"""The realtime process: WebSocket and long-polling clients of the bus (SPEC section 8)."""
