"""The embedded queue: jobs in a SQLite database (WAL mode), run by local worker processes."""
