"""synod: a threshold-signing custody engine."""

__version__ = "0.1.0"
