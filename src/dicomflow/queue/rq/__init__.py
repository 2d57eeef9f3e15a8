"""The RQ queue: jobs on a Redis server, for workers on many machines."""
