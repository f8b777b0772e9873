"""The one thing pyproject.toml cannot say: the optional C accelerator of the dispatch point
(tracetensor/_speedups.c). `optional=True`: without a C compiler the package still installs
and runs on the same code in Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tracetensor._speedups", ["tracetensor/_speedups.c"], optional=True)])
