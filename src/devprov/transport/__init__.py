"""What carries bytes, apart from what they mean: connection limits, timeouts and admission.

Every endpoint devprov serves (HTTPS today; MQTT and AMQP later) takes one
:class:`devprov.transport.policy.ConnectionPolicy` and admits its connections through one
:class:`devprov.transport.gate.ConnectionGate`. Nothing here knows HTTP or DPS.
"""
