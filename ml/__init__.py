"""prodml's ML package: plain functions shipped to Composer, Dataflow workers and Vertex jobs.

It never imports airflow. Functions take plain arguments (URIs, dicts) and never read the
profile themselves; only entry points (DAG tasks, operators, CLIs) call `ml.config.load`.
"""
