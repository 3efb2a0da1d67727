"""Training: export of chips and JSONL, fine-tuning, evaluation."""
