"""Seed-compatible import paths (``dicomflow.server.node``, ``.input``, ``.processor``).

Code written for the pipeline library dicomflow grew from runs with only its
import root changed. New code should import from :mod:`dicomflow.node`.
"""
