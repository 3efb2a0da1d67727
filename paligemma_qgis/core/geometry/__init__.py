"""Pixels to polygons: the vote mosaic, tracing, vectorising, overlays, footprints."""
