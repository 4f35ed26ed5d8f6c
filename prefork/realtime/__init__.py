"""The realtime process: WebSocket and long-polling clients of the bus.

docs/deployment.md, "Realtime bus", describes what Odoo's clients meet.
"""
