"""The native Foundation Models REST dialect: request models, the sync services, response schemas."""
