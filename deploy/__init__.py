"""Local stack tooling: embedded fallbacks, compose and k8s manifests."""
