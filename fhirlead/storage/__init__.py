"""Storage: the port every backend implements, and the factory that opens one from a URL."""
