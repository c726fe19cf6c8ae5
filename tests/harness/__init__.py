"""A child-process harness that runs loaders on hostile input under a time and memory limit."""
