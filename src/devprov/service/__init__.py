"""Use cases: load from stores, call the core, persist the outcome."""
