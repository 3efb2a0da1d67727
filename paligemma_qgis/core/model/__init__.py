"""The models: the segmenter protocol, the engines, the mask codec, tokens, masks, weights."""
