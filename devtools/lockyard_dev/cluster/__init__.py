"""Harnesses the operator's tests and demo start: a real local Kubernetes control plane."""
