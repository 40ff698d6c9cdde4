from setuptools import setup

# Dataflow workers install ml/ from this file (--setup_file); metadata lives in pyproject.toml.
setup()
