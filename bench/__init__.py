"""Benchmark helpers behind ``python -m hfl_lite bench`` (EPnP and voting against OpenCV loops)."""
