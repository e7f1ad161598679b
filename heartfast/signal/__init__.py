"""Signal preparation: resampling, filters, quality windows, synthetic ECGs, measurements."""
