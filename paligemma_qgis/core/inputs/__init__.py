"""Inputs: paths, scenes and STAC items, rasters, band roles, chip grids and chip reads."""
