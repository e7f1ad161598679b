"""HeartAgent: records, labels and measurements into instruction data."""
