"""Maintainer tools: run with ``python -m tools.<name>`` from the repository root."""
