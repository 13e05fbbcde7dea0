"""One observation per acquisition and pixel (the rule in `s2basemap.acquisitions`),
on a tile's warped masks: numpy or cupy arrays through the same operations, so the
CPU and the GPU pick the same winners bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from s2basemap.masktags import NODATA, OUTSIDE


@dataclass(frozen=True)
class Acquisition:
    """An acquisition on one tile: its scenes (indices into the tile's scene list, by
    scene id: ties go to the first), the datetime and day that date its observations."""

    id: str
    scenes: tuple[int, ...]
    acquired: str
    day: int


def group(scenes) -> list[Acquisition]:
    """The acquisitions of a tile's scenes (anything with `id`, `acquisition`, `acquired`
    and `day`; a scene without an acquisition is one of its own), in the order of their
    first scenes, with that scene's time: scenes in time order (as pick and medoid
    stack them, see `composite`) give acquisitions in time order."""
    members: dict[str, list[int]] = {}
    for index, scene in enumerate(scenes):
        members.setdefault(scene.acquisition or scene.id, []).append(index)
    return [
        Acquisition(
            ident,
            tuple(sorted(indices, key=lambda i: scenes[i].id)),
            scenes[indices[0]].acquired,
            scenes[indices[0]].day,
        )
        for ident, indices in members.items()
    ]


def has_data(mask):
    """Where a mask warped onto a tile takes part in its acquisition's fusion."""
    return (mask != OUTSIDE) & ((mask & NODATA) == 0)


def squared_distances(transform, height: int, width: int, centre, xp=np):
    """(H, W) float64 squared distance from each pixel centre of the tile (its affine
    `transform`) to `centre`, in the tile's CRS: the same IEEE operations in numpy and
    cupy, so either side picks the same winners."""
    cols = xp.arange(width, dtype=np.float64) + 0.5
    rows = xp.arange(height, dtype=np.float64) + 0.5
    x = (transform.a * cols)[None, :] + (transform.b * rows)[:, None] + transform.c
    y = (transform.d * cols)[None, :] + (transform.e * rows)[:, None] + transform.f
    dx, dy = x - centre[0], y - centre[1]
    return dx * dx + dy * dy


def winners(masks, distances, xp=np):
    """Per pixel, which of an acquisition's scenes supplies the observation.

    `masks` (k, H, W) uint8 warped masks and `distances` (k, H, W) (squared distances
    to each scene's tile centre) of the acquisition's k scenes, by scene id. Returns the
    (k, H, W) bool claims: each pixel is claimed by at most one scene, the nearest of
    those with data there, the first on ties; by none where none has data.
    """
    present = has_data(masks)
    if masks.shape[0] == 1:
        return present
    far = xp.where(present, distances, xp.inf)
    nearest = xp.argmin(far, axis=0)  # the first of equal minima: the smaller scene id
    chosen = xp.arange(masks.shape[0])[:, None, None] == nearest[None]
    return chosen & present
