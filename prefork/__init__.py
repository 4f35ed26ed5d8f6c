"""prefork: Odoo's multi-processing server model for any WSGI application."""

__version__ = "0.4.0"
