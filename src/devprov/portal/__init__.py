"""The web portal: server-rendered pages at ``/portal/`` over the same use cases the APIs call.

No rule of the core is written again here: every page reads and writes through the service layer
(``Container``) on the storage threads, and shows a :class:`~devprov.core.error.DevprovError` as a
message in the page (docs/portal.md).
"""
