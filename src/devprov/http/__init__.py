"""HTTP adapters: the HTTPS server, the management, service and device APIs."""
