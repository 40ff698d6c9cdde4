"""prodml's ML package: plain functions shipped to Composer, Dataflow workers and Vertex jobs.

It never imports airflow. Functions take plain arguments (URIs, dicts) and never read the
profile themselves; only entry points (DAG tasks, operators, CLIs) call `ml.config.load`.
"""

__version__ = "0.1.0"  # the wheel (`make dist`), the trainer image tag and the deploy read it
