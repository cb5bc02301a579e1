"""Backend modules, one per backend; none imports another. See :mod:`lockyard.backend`."""
