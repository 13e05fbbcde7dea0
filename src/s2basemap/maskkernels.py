"""The mask stage's per-pixel work as numba kernels: one pass each, no temporaries.

Single-threaded and without the GIL: the shared model process runs several scenes'
host work at once in threads of its own (numba's default thread pool may not be
entered from two threads at once), and a mask job alone has little else to do.
Kept apart from `ocm` and `masks`, which the workflow imports while it builds the
DAG: numba loads only in the jobs that use these.
"""

from __future__ import annotations

import numba
import numpy as np

from s2basemap.masktags import NODATA, OCM_CLOUD, SCL_INVALID


@numba.njit(nogil=True, cache=True)
def block_means(bands, channels, factor, rows, cols, out):
    # One pass, no temporaries: the numpy version's factor^2 strided float32 sums took
    # about 4 CPU s for a full scene. Integer sums are exact and stay below 2^24, so in
    # float32 they equal numpy's, and so does the float32 division, bit for bit.
    _, height, width = bands.shape
    for task in range(len(channels) * rows):
        k, r = task // rows, task % rows
        total = np.zeros(cols, dtype=np.int32)
        valid = np.zeros(cols, dtype=np.int32)
        for y in range(r * factor, min((r + 1) * factor, height)):
            line = bands[channels[k], y]
            for c in range(cols):
                for x in range(c * factor, min((c + 1) * factor, width)):
                    total[c] += line[x]
                    valid[c] += line[x] > 0
        for c in range(cols):
            if valid[c] > 0:
                out[k, r, c] = np.float32(total[c]) / np.float32(valid[c])


@numba.njit(nogil=True, cache=True)
def combine_rows(bands, scl, ocm, factor, use_ocm, invalid, cloudy, counted, mask, cloud):
    """Each pixel's mask bits and whether it is cloud for the dilation; per row, the data
    pixels, the valid ones and the data pixels that the statistics count as cloud.

    `invalid`, `cloudy` and `counted` are lookup tables by SCL class: SCL_INVALID's
    classes, the classes the dilation grows, and those the statistics count as cloud.
    OmniCloudMask's classes stay on their grid: pixel (r, c) takes [r // factor, c // factor].
    """
    height, width = scl.shape
    counts = np.zeros((height, 3), dtype=np.int64)
    for r in range(height):
        data = valid = cloud_in_data = 0
        ocm_row = ocm[r // factor]
        for block in range(-(-width // factor)):
            ocm_cloud = use_ocm and ocm_row[block] > 0
            for c in range(block * factor, min((block + 1) * factor, width)):
                s = scl[r, c]
                value = np.uint8(0)
                lowest = min(bands[0, r, c], bands[1, r, c], bands[2, r, c], bands[3, r, c])
                if s == 0 or lowest == 0:
                    value |= NODATA
                if invalid[s]:
                    value |= SCL_INVALID
                is_cloud, counted_cloud = cloudy[s], counted[s]
                if ocm_cloud:
                    value |= OCM_CLOUD
                    is_cloud = counted_cloud = True
                mask[r, c] = value
                cloud[r, c] = is_cloud
                if (value & NODATA) == 0:
                    data += 1
                    if counted_cloud:
                        cloud_in_data += 1
                if value == 0:
                    valid += 1
        counts[r, 0], counts[r, 1], counts[r, 2] = data, valid, cloud_in_data
    return counts
