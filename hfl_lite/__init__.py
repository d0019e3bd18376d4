"""hfl_lite."""
