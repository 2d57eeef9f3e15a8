"""The dashboard's pages and their JSON API, one module per part of the node."""
