"""Synthetic industrial-code data: line crops and whole scenes rendered from code templates, print
processes, surfaces and captures (the ``synth`` extra)."""
