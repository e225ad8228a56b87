"""The MQTT 3.1.1 device endpoint: codec (``codec``), protocol session (``session``) and DPS's
topics (``dps``)."""
