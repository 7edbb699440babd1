"""Indices into MediaPipe's 478-point face mesh (468 mesh points + 10 iris points).

"Right"/"Left" are the subject's own sides, as in ARKit: the subject's right eye is on the
image's left side in an unmirrored photo.
"""

from __future__ import annotations

N_LANDMARKS = 478

# Lips: each contour runs from the subject's right mouth corner (image left) to the left one.
LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_CORNER_RIGHT = 61  # image left
MOUTH_CORNER_LEFT = 291  # image right

# Eyes: corners and lid contours from the outer corner to the inner one.
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)

# Iris (refined landmarks): centre first, then four points on the rim.
RIGHT_IRIS = (468, 469, 470, 471, 472)
LEFT_IRIS = (473, 474, 475, 476, 477)

# Brows, from the outer end to the inner end (upper edge).
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)
# Lower edge of the brows, same order.
RIGHT_BROW_LOWER = (46, 53, 52, 65, 55)
LEFT_BROW_LOWER = (276, 283, 282, 295, 285)

NOSE_TIP = 1
SUBNASALE = 2
CHIN = 152
FOREHEAD = 10
#: Cheek points below the eyes and beside the nose (skin colour samples).
CHEEKS = (205, 425, 50, 280)

# Face oval, clockwise from the forehead top.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
             400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
             103, 67, 109)
# The jaw line part of the oval, from the subject's right jaw angle to the left one.
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
