"""Alias for seed-style imports of :class:`~dicomflow.net.address.Address`."""

from dicomflow.net.address import Address

__all__ = ["Address"]
