"""The trainer: beat, align and sft stages."""
