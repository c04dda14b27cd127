"""Registry adapter: the OCI distribution probe (`probe.RegistryProber`) and a simulator (`sim.SimRegistry`)."""
