"""What every refusal devprov writes must not contain: a foreign library's debug output.

cryptography's exception texts quote Rust structures (``ParseError { kind: ... }``, ``Some(..)``)
and Python reprs (``<Certificate(subject=<Name(CN=x)>, ...)>``); a message that carries one was
passed through instead of being said in devprov's words.
"""

from __future__ import annotations

DEBUG_OUTPUT = ("{", "}", "<Certificate", "Name(", "ParseError", "kind:", "Some(", "Tag ")


def assert_plain_words(message: str) -> None:
    leaked = [token for token in DEBUG_OUTPUT if token in message]
    assert not leaked, f"debug output {leaked} in: {message}"
    assert message.strip() == message and message, repr(message)
