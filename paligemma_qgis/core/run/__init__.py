"""One run: options, the driver, scene stages, executors, the journal, atomic outputs, the GeoPackage."""
