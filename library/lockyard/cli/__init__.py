"""The ``lockyard`` command line."""
