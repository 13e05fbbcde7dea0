"""One period's products: the mosaic COG, the observation-count COG, metadata.json,
a STAC Item and a quicklook PNG.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import CRS

from s2basemap.acquisitions import recorded_acquisition
from s2basemap.aoi import AOI
from s2basemap.atomic import atomic_path, atomic_write_json, atomic_write_text
from s2basemap.composite import PRODUCT_BANDS
from s2basemap.grid import OutputGrid
from s2basemap.manifest import load_json, scene_ids
from s2basemap.periods import DAY_NODATA, Period
from s2basemap.provenance import software_versions

log = logging.getLogger(__name__)

REFLECTANCE_SCALE = 0.0001
QUICKLOOK_EDGE = 1024
COLOR_INTERP = {"Red": "Red", "Green": "Green", "Blue": "Blue"}


Window = tuple[int, int, int, int]  # (row_off, col_off, height, width) in the output grid


def mosaic_vrt(
    grid: OutputGrid,
    pieces: dict[str, Window],
    bands: list[int],
    descriptions: list[str],
    nodata: int | None,
    scale: float | None,
    tags: dict,
    data_type: str = "UInt16",
    shift: int | None = None,
) -> str:
    """A VRT placing each composite GeoTIFF (path -> its window) in the output grid.

    Descriptions, scale and tags live in the VRT so that the COG driver copies
    them: editing a COG afterwards would break its layout. With `shift`, source
    value 0 is left out (the band's nodata shows) and the others are shifted by it.
    """
    lines = [
        f'<VRTDataset rasterXSize="{grid.width}" rasterYSize="{grid.height}">',
        f"  <SRS>{escape(CRS.from_user_input(grid.crs).to_wkt())}</SRS>",
        f"  <GeoTransform>{grid.x0!r}, {grid.res_x!r}, 0, {grid.y0!r}, 0, {-grid.res_y!r}</GeoTransform>",
        "  <Metadata>",
        *(f'    <MDI key="{escape(k)}">{escape(str(v))}</MDI>' for k, v in sorted(tags.items())),
        "  </Metadata>",
    ]
    for out_band, (band, description) in enumerate(zip(bands, descriptions), start=1):
        lines.append(f'  <VRTRasterBand dataType="{data_type}" band="{out_band}">')
        lines.append(f"    <Description>{escape(description)}</Description>")
        lines.append(f"    <ColorInterp>{COLOR_INTERP.get(description, 'Undefined')}</ColorInterp>")
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata}</NoDataValue>")
        if scale is not None:
            lines.append(f"    <Offset>0</Offset><Scale>{scale!r}</Scale>")
        source = "SimpleSource" if shift is None else "ComplexSource"
        for path, (row_off, col_off, height, width) in sorted(pieces.items(), key=lambda p: p[1]):
            lines += [
                f"    <{source}>",
                f'      <SourceFilename relativeToVRT="0">{escape(str(Path(path).resolve()))}</SourceFilename>',
                f"      <SourceBand>{band}</SourceBand>",
                f'      <SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>',
                f'      <DstRect xOff="{col_off}" yOff="{row_off}" xSize="{width}" ySize="{height}"/>',
            ]
            if shift is not None:
                lines += [
                    "      <NODATA>0</NODATA>",
                    f"      <ScaleOffset>{shift}</ScaleOffset><ScaleRatio>1</ScaleRatio>",
                ]
            lines.append(f"    </{source}>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines)


def cog_scratch_options(compress: str) -> dict[str, str]:
    """GDAL settings for the COG driver's scratch overviews that leave the COG's bytes as they are.

    The driver builds the overviews in a scratch GeoTIFF, zstd at GDAL's default level 9
    when GDAL has zstd, then reads them back to encode them into the COG. Level 1 makes
    that round trip about a quarter of the products' CPU cheaper. A zstd COG's own
    overviews take their level from the same setting, so it stays at GDAL's default there.
    """
    return {} if compress.lower() == "zstd" else {"ZSTD_LEVEL_OVERVIEW": "1"}


def write_cog(vrt_xml: str, out_path, compress: str, resampling: str) -> None:
    """GDAL's COG driver: 512 px blocks, predictor 2, internal overviews.

    GDAL opens the VRT from its XML text (its sources are absolute paths): no scratch
    file, which a full disk could stop before the COG's own write says why."""
    with atomic_path(out_path) as tmp, rasterio.Env(**cog_scratch_options(compress)):
        rasterio.shutil.copy(
            vrt_xml,
            tmp,
            driver="COG",
            COMPRESS=compress.upper(),
            PREDICTOR="YES",
            BLOCKSIZE=512,
            OVERVIEW_RESAMPLING=resampling.upper(),
            BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS",
        )


def column_pieces(
    grid: OutputGrid, columns: dict[str, list[str]], paths: dict[str, str]
) -> dict[str, Window]:
    """Each column's composite strip (column id -> path) and its window in the grid."""
    return {paths[column]: grid.column_window(tiles) for column, tiles in columns.items()}


def assemble(
    grid: OutputGrid, pieces: dict[str, Window], mosaic_path, count_path, compress: str, tags: dict
) -> None:
    """The mosaic (averaged overviews) and the count (nearest overviews) as COGs."""
    reflectance = tags | {"REFLECTANCE": f"DN * {REFLECTANCE_SCALE} (band scale)"}
    write_cog(
        mosaic_vrt(
            grid, pieces, [1, 2, 3, 4], list(PRODUCT_BANDS), 0, REFLECTANCE_SCALE, reflectance
        ),
        mosaic_path,
        compress,
        "average",
    )
    write_cog(
        mosaic_vrt(grid, pieces, [5], ["valid observations"], None, None, tags),
        count_path,
        compress,
        "nearest",
    )


def write_products(
    grid: OutputGrid,
    column_paths: dict[str, str],
    columns: dict,
    products: dict,
    compress: str,
    period_label: str,
) -> None:
    """A period's mosaic and count COGs from its column composites, and the quicklook."""
    assemble(
        grid=grid,
        pieces=column_pieces(grid, columns, column_paths),
        mosaic_path=products["mosaic"],
        count_path=products["counts"],
        compress=compress,
        tags={"PERIOD": period_label},
    )
    quicklook(products["mosaic"], products["quicklook"])
    log.info("wrote %s", products["mosaic"])


def write_date_products(
    grid: OutputGrid,
    column_paths: dict[str, str],
    columns: dict,
    products: dict,
    compress: str,
    period: Period,
) -> None:
    """pick and medoid: the acquisition-day COG (days since the period's start, a byte,
    nodata 255) from the columns' day + 1 band, and its picture with a legend."""
    description = f"acquisition day (days since {period.start.isoformat()})"
    write_cog(
        mosaic_vrt(
            grid,
            column_pieces(grid, columns, column_paths),
            [6],
            [description],
            DAY_NODATA,
            None,
            {"PERIOD": period.label, "DAY_ZERO": period.start.isoformat()},
            data_type="Byte",
            shift=-1,
        ),
        products["date"],
        compress,
        "nearest",
    )
    date_picture(products["date"], products["date_picture"], period)
    log.info("wrote %s", products["date"])


# The date picture's ramp, from the period's first day to its last (viridis' ends and middle)
DATE_RAMP = np.array([[68, 1, 84], [33, 145, 140], [253, 231, 37]], dtype=np.float64)


def day_colours(days: np.ndarray, n_days: int) -> np.ndarray:
    """(..., 3) uint8 colours of days 0..n_days-1 along DATE_RAMP."""
    position = days.astype(np.float64) / max(n_days - 1, 1) * (len(DATE_RAMP) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(DATE_RAMP) - 2)
    weight = (position - low)[..., None]
    return np.rint(DATE_RAMP[low] * (1 - weight) + DATE_RAMP[low + 1] * weight).astype(np.uint8)


def date_picture(date_path, svg_path, period: Period, edge: int = QUICKLOOK_EDGE) -> None:
    """An SVG of the date band (a PNG inside, nodata transparent) with a legend of dates."""
    import base64

    from rasterio.io import MemoryFile

    with rasterio.open(date_path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / edge)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        days = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest)
    valid = days != DAY_NODATA
    rgba = np.zeros((4, *shape), dtype=np.uint8)
    rgba[:3] = np.moveaxis(day_colours(np.where(valid, days, 0), period.days), -1, 0)
    rgba[:3, ~valid] = 0
    rgba[3] = np.where(valid, 255, 0)
    with MemoryFile() as memory:
        with memory.open(
            driver="PNG", width=shape[1], height=shape[0], count=4, dtype="uint8"
        ) as dst:
            dst.write(rgba)
        png = base64.b64encode(memory.read()).decode()
    height, width = shape
    ticks = sorted({0, (period.days - 1) // 2, period.days - 1})
    bar = [
        f'<rect x="{10 + i * 3}" y="{height + 12}" width="3" height="14" '
        f'fill="rgb{tuple(int(c) for c in day_colours(np.array(day), period.days))}"/>'
        for i, day in enumerate(np.linspace(0, period.days - 1, 100))
    ]
    labels = [
        f'<text x="{10 + 300 * t / max(period.days - 1, 1):.0f}" y="{height + 40}" '
        f'font-size="11" text-anchor="middle" font-family="sans-serif">'
        f"{period.start + timedelta(days=t):%d %b}</text>"
        for t in ticks
    ]
    svg = "\n".join(
        [
            (
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 330)}" '
                f'height="{height + 60}">'
            ),
            f'<image width="{width}" height="{height}" href="data:image/png;base64,{png}"/>',
            *bar,
            *labels,
            (
                f'<text x="10" y="{height + 56}" font-size="11" font-family="sans-serif">'
                f"acquisition date of each pixel, {period.label} (transparent: none)</text>"
            ),
            "</svg>",
        ]
    )
    atomic_write_text(svg_path, svg + "\n")


def coverage(mosaic_path, aoi: AOI) -> float:
    """Share of the AOI's pixels that got a value, counted block by block (state-sized mosaics)."""
    from rasterio.features import geometry_mask

    filled = inside_total = 0
    with rasterio.open(mosaic_path) as src:
        outline = aoi.in_crs(src.crs)
        for _, window in src.block_windows(1):
            inside = geometry_mask(
                [outline],
                out_shape=(window.height, window.width),
                transform=src.window_transform(window),
                invert=True,
            )
            if inside.any():
                filled += int(((src.read(1, window=window) > 0) & inside).sum())
                inside_total += int(inside.sum())
    return filled / max(inside_total, 1)


def quicklook(mosaic_path, png_path, edge: int = QUICKLOOK_EDGE) -> None:
    """A small RGBA PNG: red, green, blue stretched 2-98 %, nodata transparent."""
    with rasterio.open(mosaic_path) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / edge)))
        shape = (3, max(1, src.height // factor), max(1, src.width // factor))
        rgb = src.read([1, 2, 3], out_shape=shape, resampling=rasterio.enums.Resampling.average)
    valid = (rgb > 0).all(axis=0)
    rgba = np.zeros((4, *shape[1:]), dtype=np.uint8)
    for band in range(3):
        values = rgb[band][valid]
        low, high = np.percentile(values, (2, 98)) if values.size else (0, 1)
        stretched = (rgb[band].astype(np.float64) - low) / max(high - low, 1) * 254 + 1
        rgba[band] = np.where(valid, np.clip(stretched, 1, 255), 0).astype(np.uint8)
    rgba[3] = np.where(valid, 255, 0)
    with atomic_path(png_path) as tmp:
        with rasterio.open(
            tmp, "w", driver="PNG", width=shape[2], height=shape[1], count=4, dtype="uint8"
        ) as dst:
            dst.write(rgba)
        Path(str(tmp) + ".aux.xml").unlink(missing_ok=True)


def attribution(datetimes: list[str], fallback_year: int) -> str:
    years = sorted({text[:4] for text in datetimes}) or [str(fallback_year)]
    return f"Contains modified Copernicus Sentinel data {', '.join(years)}"


def scene_entries(manifest: dict, records: dict, stats: dict) -> list[dict]:
    """Provenance of every scene that went into the mosaic."""
    entries = []
    for scene in manifest["scenes"]:
        record = records.get(scene["id"], {})
        if record.get("status") != "ok":
            continue
        mask = stats.get(scene["id"], {})
        entries.append(
            {
                "id": scene["id"],
                "datetime": scene["datetime"],
                "tile": scene["tile"],
                "acquisition": recorded_acquisition(scene),
                "processing_baseline": scene["processing_baseline"],
                "hrefs": scene["assets"],
                "offset": record["offset"],
                "valid_fraction": mask.get("valid_fraction"),
                "cloud_fraction": mask.get("cloud_fraction"),
            }
        )
    return entries


def acquisition_entries(scenes: list[dict]) -> list[dict]:
    """The acquisitions the mosaic's scenes form (s2basemap.acquisitions): each one
    observation per pixel, dated by its earliest scene."""
    groups: dict[str, list[dict]] = {}
    for scene in sorted(scenes, key=lambda s: (s["datetime"], s["id"])):
        groups.setdefault(scene["acquisition"], []).append(scene)
    return [
        {
            "id": ident,
            "datetime": members[0]["datetime"],
            "scenes": sorted(s["id"] for s in members),
            "tiles": sorted(s["tile"] for s in members),
        }
        for ident, members in groups.items()
    ]


def build_metadata(
    period: Period,
    grid: OutputGrid,
    manifest: dict,
    summary: dict,
    records: dict,
    stats: dict,
    settings: dict,
    files: dict,
    valid_coverage: float | None,
    processing_seconds: dict | None,
) -> dict:
    crs = CRS.from_user_input(grid.crs)
    scenes = scene_entries(manifest, records, stats)
    method = settings.get("method", "percentile")
    status = "ok" if scenes else ("no_scenes" if not manifest["scenes"] else "no_usable_scenes")
    metadata = {
        "product": files.get("mosaic", "").removesuffix(".tif") or None,
        "status": status,
        "period": {
            "label": period.label,
            "start": period.start.isoformat(),
            "end": period.end.isoformat(),
        },
        "files": files,
        "crs": {"name": crs.name, "epsg": crs.to_epsg(), "wkt": crs.to_wkt()},
        "resolution": [grid.res_x, grid.res_y],
        "resolution_unit": crs.axis_info[0].unit_name,
        "bounds": list(grid.bounds),
        "size": {"width": grid.width, "height": grid.height},
        "bands": list(PRODUCT_BANDS),
        "nodata": 0,
        "reflectance_scale": REFLECTANCE_SCALE,
        "percentile": None if method == "medoid" else settings["percentile"],
        "composite": {"method": method, "resampling": settings["resampling"]}
        | ({"pick_index": settings["pick_index"]} if method == "pick" else {})
        | {"tile_size": grid.tile_size},
        "mask": settings["mask"],
        "source": manifest["source"],
        "scenes": scenes,
        "acquisitions": acquisition_entries(scenes),
        "left_out": summary["left_out"],
        "valid_coverage": valid_coverage,
        "software": software_versions(),
        "processing_seconds": processing_seconds,
        "attribution": attribution([s["datetime"] for s in scenes], period.start.year),
    } | (date_band(period) if method != "percentile" else {})
    metadata["composite"]["description"] = mosaic_method(metadata)  # for the STAC Item
    return metadata


def date_band(period: Period) -> dict:
    """What the date COG's one band means (pick and medoid)."""
    return {
        "date_band": {
            "name": "acquisition_day",
            "description": (
                f"days since {period.start.isoformat()} (the period's first day) to the "
                "acquisition of the observation each pixel comes from"
            ),
            "day_zero": period.start.isoformat(),
            "data_type": "uint8",
            "nodata": DAY_NODATA,
        }
    }


def mosaic_method(metadata: dict) -> str:
    """How the mosaic's pixels were chosen, in words."""
    composite = metadata["composite"]
    if composite["method"] == "pick":
        return (
            f"per pixel, the observation at the {metadata['percentile']}th percentile "
            f"rank of {composite['pick_index']}"
        )
    if composite["method"] == "medoid":
        return "per pixel, the medoid observation"
    return f"{metadata['percentile']}th percentile of each band"


def processing_seconds(benchmark_dirs: dict | None) -> dict | None:
    """Wall seconds per stage from the jobs' Snakemake benchmark files, in one folder per
    stage (`Layout.stage_benchmarks`); None where the run's jobs share no filesystem
    (object storage): their benchmarks are on the nodes that ran them."""
    if benchmark_dirs is None:
        return None
    totals = {}
    for stage, folder in benchmark_dirs.items():
        seconds = 0.0
        for path in sorted(Path(folder).glob("*.tsv")):
            rows = path.read_text().splitlines()
            if len(rows) > 1:
                seconds += float(rows[-1].split("\t")[0])
        totals[stage] = round(seconds, 3)
    return totals


# the product files a period's metadata lists, as the workflow names its inputs
PRODUCT_FILES = ("mosaic", "counts", "quicklook", "date", "date_picture")


@dataclass(frozen=True)
class PeriodFiles:
    """What a period's metadata job reads and writes: its declared inputs and outputs."""

    manifest: str
    summary: str
    records: list
    stats: list
    products: dict  # mosaic, counts, quicklook (and date products); empty without scenes
    metadata: str
    item: str
    statistics: str


def describe_period(
    period: Period,
    grid: OutputGrid,
    aoi: AOI,
    settings: dict,
    files: PeriodFiles,
    timings: dict | None,
) -> dict:
    """Write metadata.json and the statistics table of one period (with or without a
    mosaic), from the period's files; its STAC Item is `catalog.write_month_item`'s."""
    label = period.label
    manifest = load_json(files.manifest)
    ids = scene_ids(manifest)
    records = _by_id(ids, files.records)
    stats = _by_id(ids, files.stats)
    names = {"metadata": Path(files.metadata).name, "stac_item": Path(files.item).name}
    valid_coverage = None
    if ids:
        # named as published: the products' file names, whatever folder the job sees
        names |= {key: Path(path).name for key, path in files.products.items()}
        valid_coverage = round(coverage(files.products["mosaic"], aoi), 6)
    metadata = build_metadata(
        period,
        grid,
        manifest,
        load_json(files.summary),
        records,
        stats,
        settings,
        names,
        valid_coverage,
        timings,
    )
    atomic_write_json(files.metadata, metadata)
    write_statistics(metadata, files.statistics)
    log.info(
        "period %s: %s, %d scenes, coverage %s",
        label,
        metadata["status"],
        len(metadata["scenes"]),
        valid_coverage,
    )
    return metadata


def _by_id(ids: list[str], paths) -> dict:
    """Scene id -> the JSON document of that scene, from files given in `ids`' order."""
    return {i: load_json(path) for i, path in zip(ids, paths, strict=True)}


def write_statistics(metadata: dict, path) -> None:
    """A two-column table of the period's headline numbers (for Snakemake's report)."""
    scenes = metadata["scenes"]
    clouds = [s["cloud_fraction"] for s in scenes if s.get("cloud_fraction") is not None]
    coverage = metadata["valid_coverage"]
    rows = [
        ("period", metadata["period"]["label"]),
        ("status", metadata["status"]),
        ("scenes used", len(scenes)),
        ("acquisitions used", len(metadata["acquisitions"])),
        ("scenes left out", len(metadata["left_out"])),
        ("valid coverage (%)", f"{coverage * 100:.2f}" if coverage is not None else "-"),
        ("mean cloud fraction (%)", f"{100 * sum(clouds) / len(clouds):.2f}" if clouds else "-"),
        ("method", metadata["composite"]["description"]),
        ("processing (s)", _total_seconds(metadata["processing_seconds"])),
    ]
    text = "statistic\tvalue\n" + "".join(f"{k}\t{v}\n" for k, v in rows)
    atomic_write_text(path, text)


def _total_seconds(processing: dict | None) -> str:
    return f"{sum(processing.values()):.1f}" if processing is not None else "-"
