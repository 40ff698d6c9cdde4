from setuptools import setup

# Metadata and runtime dependencies live in pyproject.toml; `make dist` builds the wheel that
# Dataflow workers (--extra_package) and the Vertex AI trainer image install.
setup()
