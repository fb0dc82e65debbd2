"""Deployment tooling (never packaged): the API Gateway spec generator, the function packager, caller keys
and the deploy-time jobs table step."""
