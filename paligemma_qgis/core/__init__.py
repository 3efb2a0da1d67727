"""QGIS-free core, one subpackage per concern (docs/ARCHITECTURE.md draws how a run flows through them).

inputs/ paths, scenes, rasters, grids; run/ the driver, stages, executors, journal, outputs;
geometry/ mosaic to polygons; model/ engines, codec, tokens; temporal/ change and occurrence;
train/ export, fine-tuning, evaluation. Nothing under core/ may import qgis; heavy modules are
imported where they are used.
"""
