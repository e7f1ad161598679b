"""Models: Beat tokenizer, encoders, decoder LLM, DSPA projectors, HeartcareGPT assembly, LoRA."""
