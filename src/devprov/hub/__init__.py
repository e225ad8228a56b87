"""Adapters behind :class:`devprov.service.hub_identity.HubIdentities`: one module per hub kind.

Each adapter makes the network calls that create, disable and remove a device's identity in a
linked hub, and translates what goes wrong into the port's errors. They import the service's
port and the core only (an import-linter contract keeps it so).
"""
