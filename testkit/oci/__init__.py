"""OCI registries for tests: a simulated one with fault knobs, and the real docker-registry process."""
