"""Schema: the registry and the typed run settings; imports nothing else of the package."""
