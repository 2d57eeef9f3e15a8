"""The running node in stages: ingest, journal and spool, collector, trigger, rounds, export,
archive outputs and recovery. ``Node`` only wires, starts, stops and recovers."""
