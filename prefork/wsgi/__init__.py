"""WSGI adaptation: environ from a Request, and the response side of PEP 3333."""
