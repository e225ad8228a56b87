"""Adapters that make a device's identity in the hub an assignment names, one module per hub kind
(docs/hubs.md). They implement devprov.service.hub_identity.HubIdentities and import only the
service and core packages."""
