"""Real servers for tests, benchmarks and the demo, started on free loopback ports.

Each server module (``redis``, ``postgres``, ``moto``) starts its own processes in a temporary
folder and stops only what it started. Nothing here assumes a service is already running.
"""
