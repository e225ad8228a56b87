"""DPS's device API over AMQP 1.0 (5671, and AMQPWSB10 inside a WebSocket): docs/amqp.md."""
