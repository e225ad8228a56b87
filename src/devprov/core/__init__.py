"""The pure domain: certificates, proof-of-possession, chain and enrollment rules.

Nothing here performs I/O, reads the clock or draws random numbers: time and nonces are
passed in, so every decision is a function of its arguments.
"""
