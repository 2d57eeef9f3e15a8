"""The web face of a node: dashboard, JSON actions, DICOMweb and Prometheus metrics.

``create_app(WebContext(...))`` builds the FastAPI application; ``WebServer`` runs it
with uvicorn in a background thread beside the node.
"""

from dicomflow.web.app import create_app
from dicomflow.web.context import WebContext
from dicomflow.web.server import WebServer

__all__ = ["WebContext", "WebServer", "create_app"]
