"""Photo -> avatar: read the photo, find the face (landmarks), frame it, cut the person out
(matting), enroll it (cached) and build the rig tensors the render graph reads."""
