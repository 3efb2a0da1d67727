"""Segmenters: turn batches of chips into water masks (see base.Segmenter)."""
