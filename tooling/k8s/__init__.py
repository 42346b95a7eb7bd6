"""Kubernetes deployment of Tierserve: render the KubeRay chart, validate it offline, and
suspend/resume GPU tiers. Nothing here talks to a cluster unless asked to run kubectl/helm."""
