"""SPICE stage of xbarchar: crossbar circuits, netlists, ngspice runs, sampling and HDF5 datasets."""

from spice.circuit import CircuitError, CircuitSpec, spec_from_config

__all__ = ["CircuitError", "CircuitSpec", "spec_from_config"]
