"""Deployment tooling (never packaged): the API Gateway spec generator and the function packager."""
