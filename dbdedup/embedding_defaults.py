"""The embedding settings other modules name: the vector size and the fused rule's defaults.

Apart from ``dbdedup.embedding`` so that the command line and the clustering can name them without
importing numpy and Pillow (a ``report`` pays every import before it starts).
"""

from __future__ import annotations

EMBEDDING_DIM = 64

# Lookups (`similar`, dbdedup.similar), which check no pixels: a pair whose embeddings have cosine
# similarity >= DEFAULT_MIN_SIMILARITY is a match when its pHash distance is also <=
# DEFAULT_CONFIRM_DISTANCE (the fused rule's defaults before verification; clustering's are below).
# Measured by bench/accuracy/embedding_study.py on bench/accuracy's set (9,435 images, 300 originals
# x 21 transforms + 2,835 distractors; direct pairs, not cluster-implied):
#   pHash <= 8 alone:                                    precision 0.9940, recall 0.518
#   pHash <= 8 OR (sim >= 0.92 AND pHash <= 20):         precision 0.9902, recall 0.619
#     crop_90 0.55 -> 0.92, border 0.06 -> 0.64, rotate_5 0.46 -> 0.67 (recall of original-copy pairs)
#   With transform variants as the hash (best of orientations and trimmed), the same (s, c) adds
#   crop_90 0.61 -> 0.93 and border 0.76 -> 0.99 for 0.0014 precision (0.9639 -> 0.9625).
#   Looser: sim >= 0.92 with pHash <= 24 gives 0.984; sim alone >= 0.92 gives 0.982 / 0.611.
DEFAULT_MIN_SIMILARITY: float = 0.92
DEFAULT_CONFIRM_DISTANCE: int = 20
# Clustering links verified pairs only, and an embedding pair farther than an aligned pHash
# (verify_settings().aligned_distance, 12) can only be verified by the geometric check (keypoints,
# RANSAC, the overlap's colours): that confirms it better than a pHash bound. So the fused rule asks
# no pHash bound by default (64); lookups (`similar`), which check no pixels, keep 20.
# bench/accuracy/rescore.py: 20 -> 64 gave recall 0.655 -> 0.665, precision 0.9747 -> 0.9745 (1,009
# verified true pairs and 23 look-alikes beyond 20 bits now link; crops of 25% 0.30 -> 0.36).
DEFAULT_CLUSTER_CONFIRM_DISTANCE: int = 64
# For the same reason the fused rule's embedding floor is lower than a lookup's: a candidate only
# links once verified, and verification checks an embedding-only pair by its pixels. rescore.py on
# bench/accuracy (the floor of match_embeddings and of the rule moved together; precision, recall,
# pairs checked by pixels beyond those at 0.92): 0.92 0.9748 / 0.687; 0.85 0.9756 / 0.723, +4,116;
# 0.80 0.9760 / 0.743, +7,325; 0.70 0.9766 / 0.766, +15,230. On 10,000 unrelated small photos
# (the load benchmark's) no pair reaches 0.85 but 2, 0.80 about 120, 0.70 about 8,800: 0.85 adds
# recall on edited copies and almost no check on a collection without them.
DEFAULT_CLUSTER_MIN_SIMILARITY: float = 0.85
