"""Core utilities that need only numpy and OpenCV: errors, atomic output, code formats."""
