"""devprov: a self-hosted, wire-compatible device provisioning service."""

__version__ = "0.1.0"
