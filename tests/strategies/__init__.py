"""Test-only strategies: what a new strategy takes (a class here, a YAML under tests/conf/strategy)."""
