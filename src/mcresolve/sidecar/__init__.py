"""mcresolve as a sidecar: local ports forwarded through health-aware pools."""
