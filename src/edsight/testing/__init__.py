"""Test doubles that speak real protocols (served over loopback by the tests)."""
