"""Device stub."""
