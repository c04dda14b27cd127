"""A simulated Kubernetes API server (`apiserver.SimCluster`) and real-shaped API objects (`objects`)."""
