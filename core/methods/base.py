"""The method base classes, for the method files of this package (they live in
``lorakit.core.method``, outside the package, so hosts and the protocol import them without
importing every method)."""

from ..method import (
    LINEAR_OPS,
    AdapterConfig,
    ConvOps,
    FactoredMethod,
    HostOps,
    Method,
    SlotInfo,
    canonical_signs,
    kaiming_,
    thin_svd,
)

__all__ = [
    "LINEAR_OPS",
    "AdapterConfig",
    "ConvOps",
    "FactoredMethod",
    "HostOps",
    "Method",
    "SlotInfo",
    "canonical_signs",
    "kaiming_",
    "thin_svd",
]
