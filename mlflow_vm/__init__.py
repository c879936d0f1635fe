"""Build and verify VM images that run an MLflow tracking server."""
