"""The hub's test support: fixtures and helpers its tests (and the cross-service tests under tests/) import.

Kept outside ``src`` so the hub's package never ships pytest or the fakes; pytest finds it through ``pythonpath``
in the root pyproject.toml.
"""
