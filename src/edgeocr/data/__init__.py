"""Reading labelled data. ``labels`` and ``images`` need only numpy and OpenCV; the torch datasets
for training live in ``datasets`` and are imported only by training code."""
