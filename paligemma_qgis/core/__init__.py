"""QGIS-free core: raster I/O, chip grid, tokens, codec, segmenters, mosaic, vectors.

Nothing under core/ may import qgis; heavy modules are imported where they are used.
"""
