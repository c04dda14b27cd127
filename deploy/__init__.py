"""Deployment artefacts: the Helm chart and the offline renderer that tests it."""
