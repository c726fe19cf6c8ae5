"""Computations beside the model: linked views, measurements, label statistics, slice
interpolation, label surfaces and brush footprints. Pure functions and small dataclasses over a
`Volume` and label arrays; the GUI only shows their results."""
