"""Training of the line recognisers (torch + Lightning; the ``train`` extra).

:func:`edgeocr.train.command.train_command` is what ``edgeocr train`` calls; it imports the
heavy machinery only after checking that the extra is installed. Nothing in ``edgeocr.core`` or
``edgeocr.runtime`` may import this package.
"""
