"""The embedded default database: scikit-image's photos, KADID-10K's 25 distortions x 5 levels, FR scores.

No real IQA database ships with the package, so `load_synthetic()` builds one on first use (about 50 s
on 2 CPU cores for the default config) and caches it:

- References (contents): colour photographs bundled with scikit-image, plus matplotlib's `grace_hopper`
  sample (no download needed). A reference is a photo name (`_photo`) with an optional view:
  `"astronaut@128,256"` is the size x size tile at row 128, column 256 of the photo at its native scale
  (not resampled: every pixel is the photo's own); `"coffee:nw"` the top-left quadrant square, resized;
  no view, the centred square, resized. The default list has 48 tiles of 128 px from 7 photos (astronaut,
  chelsea, coffee, rocket, immunohistochemistry, motorcycle, grace_hopper), enough for content-disjoint
  training and test sets of hundreds of images each. They were picked on a grid of each photo among tiles
  with a mean grey level in (0.15, 0.85), a standard deviation above 0.06 and under 20% of near-black or
  near-white pixels, spread evenly over each photo (flat or near-black tiles let several distortions'
  quality stay level). Measured on the default database: the score falls strictly with the level in 1,190
  of the 1,200 (tile, type) series; the other 10 are pixelate (21; 7 series), colour saturation 2 (8; 2)
  and quantization (22; 1), with a tie or a small rise between two neighbouring levels. Tiles of one photo share its style (lighting, camera), so held-out
  contents are new views rather than new photographs. Grey-level photos are left out on purpose: the
  colour distortions (4, 7, 8) do nothing to them; `hubble_deep_field` and `retina` (near black) too.
- Distortions: `metalearn_iqa.data.distortions.distort`, every type x level of the config.
- Score: s = ((HaarPSI + MS-SSIM) / 2) ** 3 between the distorted and the reference image, both as the
  8-bit PNGs written to disk. HaarPSI (piq, colour, YIQ) sees structure and chroma; MS-SSIM (piq, on
  RGB, 4 scales with a 7-tap Gaussian window: the standard 5 scales x 11 taps need images over 160
  pixels) adds luminance and contrast changes, which HaarPSI barely sees (mean shift, contrast). Both
  are in [0, 1], higher = better, and take ~3 ms per 128-pixel image on a CPU; VSI and FSIM were
  better known but ~20x slower. The mean crowds into [0.6, 1]; the fixed cube (not fitted to the data)
  spreads it over [0, 1] and keeps the order. `raw_score` equals `score`; the two metric values are
  kept in scores.csv.
- Size: 128 x 128 by default: large enough for HaarPSI's 3 scales and the 4-scale MS-SSIM, small
  enough that the 6,048 images (48 references, 6,000 distorted) are generated in under a minute.

Files (the KADID-10K layout): `images/I01.png` (reference 1), `images/I01_07_03.png` (reference 1,
distortion 7, level 3); `scores.csv` with header `dist_img,ref_img,score,haarpsi,ms_ssim` (one row per
distorted image; names relative to `images/`); `manifest.json` with the config, the reference names,
the metric, package versions, counts and a SHA-256 content hash of the images and scores.

Deterministic: the random distortions are seeded from (config.seed, reference name, type), the same
seed at every level, so one type's levels are nested (the same noise field scaled up, the first 40 of
the 100 patches, ...), which keeps the quality falling with the level. Same config, same package
versions -> byte-identical files. Cached: a folder whose manifest matches the config is left alone.
Atomic: the files are written into a temporary sibling folder that is renamed into place at the end.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from metalearn_iqa.data.distortions import DISTORTIONS, distort
from metalearn_iqa.data.records import DatasetError, IQARecord

DEFAULT_REFERENCES: tuple[str, ...] = (
    "astronaut@0,0",
    "astronaut@0,256",
    "astronaut@0,384",
    "astronaut@128,256",
    "astronaut@128,384",
    "astronaut@256,128",
    "astronaut@256,256",
    "astronaut@384,128",
    "chelsea@22,33",
    "chelsea@22,289",
    "chelsea@150,33",
    "chelsea@150,289",
    "coffee@8,44",
    "coffee@8,172",
    "coffee@136,44",
    "coffee@136,172",
    "coffee@136,300",
    "coffee@136,428",
    "coffee@264,300",
    "coffee@264,428",
    "rocket@149,0",
    "rocket@277,0",
    "rocket@277,256",
    "rocket@277,512",
    "immunohistochemistry@0,0",
    "immunohistochemistry@0,256",
    "immunohistochemistry@128,0",
    "immunohistochemistry@128,256",
    "immunohistochemistry@256,0",
    "immunohistochemistry@256,256",
    "immunohistochemistry@384,0",
    "immunohistochemistry@384,256",
    "motorcycle@58,50",
    "motorcycle@58,306",
    "motorcycle@58,562",
    "motorcycle@186,178",
    "motorcycle@186,434",
    "motorcycle@314,50",
    "motorcycle@314,306",
    "motorcycle@314,562",
    "grace_hopper@44,0",
    "grace_hopper@44,256",
    "grace_hopper@172,0",
    "grace_hopper@172,256",
    "grace_hopper@300,128",
    "grace_hopper@300,384",
    "grace_hopper@428,0",
    "grace_hopper@428,256",
)
METRIC = "((haarpsi + ms_ssim) / 2) ** 3; ms_ssim: 4 scales, 7-tap Gaussian window (sigma 1.5)"
SCORE_POWER = 3.0
MANIFEST_VERSION = 2
_CACHE_FILES = {"images", "scores.csv", "manifest.json"}
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363)


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate: image size, references (None = `DEFAULT_REFERENCES`), seed, types, levels."""

    size: int = 128
    references: tuple[str, ...] | None = None
    seed: int = 0
    types: tuple[int, ...] = tuple(range(1, 26))
    levels: tuple[int, ...] = field(default=(1, 2, 3, 4, 5))

    def resolved_references(self) -> tuple[str, ...]:
        return tuple(self.references) if self.references is not None else DEFAULT_REFERENCES

    def as_dict(self) -> dict:
        d = asdict(self)
        d["references"] = list(self.resolved_references())
        d["types"] = list(self.types)
        d["levels"] = list(self.levels)
        return d

    def key(self) -> str:
        """Short hash of the config (with the references resolved), for cache folder names."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:10]


def default_root(config: SyntheticConfig | None = None) -> Path:
    """`<base>/synthetic-<size>-<config hash>`; base = `$METALEARN_DATA` if set, else `~/.cache/metalearn`."""
    config = config or SyntheticConfig()
    base = os.environ.get("METALEARN_DATA")
    base_path = Path(base).expanduser() if base else Path.home() / ".cache" / "metalearn"
    return base_path / f"synthetic-{config.size}-{config.key()}"


# ------------------------------------------------------------------------------------------ references


def _photo(base: str) -> np.ndarray:
    """A bundled colour photo by name: a `skimage.data` function, or matplotlib's `grace_hopper` sample."""
    from skimage import data

    try:
        if base == "motorcycle":
            return np.asarray(data.stereo_motorcycle()[0])
        if base == "grace_hopper":
            from matplotlib import cbook
            from PIL import Image

            with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
                return np.asarray(img.convert("RGB"))
        return np.asarray(getattr(data, base)())
    except Exception as exc:  # unknown name, or an image that would need a download
        raise ValueError(f"reference {base!r}: not a bundled skimage.data image ({exc})") from None


def reference_image(name: str, size: int) -> np.ndarray:
    """The named photo as a float32 size x size x 3 array in [0, 1].

    `name` is a photo (`_photo`), then optionally `:nw|ne|sw|se` (that quadrant's square, resized) or
    `@y,x` (the size x size tile at row y, column x of the photo at its native scale, not resampled).
    Without either, the centred square of side min(H, W), resized.
    """
    from skimage.color import gray2rgb
    from skimage.transform import resize

    base, at, offset = name.partition("@")
    base, _, quadrant = base.partition(":")
    image = _photo(base)
    if image.ndim == 2:
        image = gray2rgb(image)
    image = image[..., :3]
    h, w = image.shape[:2]
    if at:
        try:
            y0, x0 = (int(v) for v in offset.split(","))
        except ValueError:
            raise ValueError(f"reference {name!r}: a tile is written name@row,column") from None
        if not (0 <= y0 <= h - size and 0 <= x0 <= w - size):
            raise ValueError(f"reference {name!r}: a {size}-pixel tile there leaves the {h}x{w} photo")
        return (image[y0 : y0 + size, x0 : x0 + size] / 255.0).astype(np.float32)
    side = min(h, w)
    if quadrant:
        if quadrant not in ("nw", "ne", "sw", "se"):
            raise ValueError(f"reference {name!r}: quadrant must be nw, ne, sw or se")
        side //= 2
        y0 = 0 if quadrant[0] == "n" else h - side
        x0 = 0 if quadrant[1] == "w" else w - side
    else:
        y0, x0 = (h - side) // 2, (w - side) // 2
    crop = image[y0 : y0 + side, x0 : x0 + side]
    out = resize(crop, (size, size), anti_aliasing=True, preserve_range=False)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


# -------------------------------------------------------------------------------------------- scoring


def fr_scores(distorted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, haarpsi, ms_ssim) of uint8 images N x H x W x 3 against one uint8 reference H x W x 3."""
    import piq
    import torch

    x = torch.from_numpy(distorted).permute(0, 3, 1, 2).float().div(255.0)
    y = torch.from_numpy(reference).permute(2, 0, 1).float().div(255.0)[None].expand_as(x).contiguous()
    with torch.no_grad():
        haar = piq.haarpsi(x, y, data_range=1.0, reduction="none")
        ms = piq.multi_scale_ssim(
            x,
            y,
            kernel_size=7,
            kernel_sigma=1.5,
            data_range=1.0,
            reduction="none",
            scale_weights=torch.tensor(_MS_SSIM_WEIGHTS),
        )
    haar_np = haar.clamp(0, 1).double().numpy()
    ms_np = ms.clamp(0, 1).double().numpy()
    return ((haar_np + ms_np) / 2.0) ** SCORE_POWER, haar_np, ms_np


# ------------------------------------------------------------------------------------------ generation


def _seed(config: SyntheticConfig, reference: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([config.seed, zlib.crc32(reference.encode()), index])


def _content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((folder / "images").glob("*.png")) + [folder / "scores.csv"]:
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    """The installed versions of the packages that shape the generated images."""
    import PIL
    import piq
    import scipy
    import torch

    return {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-image": importlib.metadata.version("scikit-image"),  # skimage's lazy module hides __version__
        "pillow": PIL.__version__,
        "piq": piq.__version__,
        "torch": torch.__version__,
    }


def _read_manifest(root: Path) -> dict:
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: manifest not found") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise DatasetError(f"{path}: not a synthetic-database manifest (no config)")
    return manifest


def _is_current(root: Path, config: SyntheticConfig) -> bool:
    try:
        manifest = _read_manifest(root)
    except DatasetError:
        return False
    return (
        manifest.get("version") == MANIFEST_VERSION
        and manifest.get("config") == config.as_dict()
        and (root / "scores.csv").is_file()
    )


def _check_config(config: SyntheticConfig) -> None:
    known = {d.index for d in DISTORTIONS}
    if bad := [t for t in config.types if t not in known]:
        raise ValueError(f"unknown distortion type(s) {bad}; valid: 1..25")
    if bad := [lv for lv in config.levels if not 1 <= lv <= 5]:
        raise ValueError(f"unknown level(s) {bad}; valid: 1..5")
    if config.size < 64:
        raise ValueError(f"size must be at least 64 (MS-SSIM's 4 scales), got {config.size}")
    if not config.resolved_references():
        raise ValueError("no references")


def generate_synthetic(
    root: str | Path, config: SyntheticConfig | None = None, progress: bool = True
) -> Path:
    """Write the synthetic database for `config` into `root` (unless it is already there); return `root`."""
    from PIL import Image
    from tqdm.auto import tqdm

    config = config or SyntheticConfig()
    _check_config(config)
    root = Path(root).expanduser()
    if _is_current(root, config):
        return root
    if root.exists() and any(p.name not in _CACHE_FILES for p in root.iterdir()):
        raise DatasetError(
            f"{root}: folder holds other files; refusing to write the synthetic database there"
        )

    references = config.resolved_references()
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        images = tmp / "images"
        images.mkdir()
        rows: list[tuple[str, str, float, float, float]] = []
        total = len(references) * len(config.types) * len(config.levels)
        bar = tqdm(total=total, desc="synthetic IQA database", unit="img", disable=not progress)
        for r, ref_name in enumerate(references, start=1):
            ref_float = reference_image(ref_name, config.size)
            ref_u8 = _to_uint8(ref_float)
            ref_file = f"I{r:02d}.png"
            Image.fromarray(ref_u8).save(images / ref_file, compress_level=1)
            names, outs = [], []
            for t in config.types:
                for level in config.levels:
                    rng = np.random.default_rng(_seed(config, ref_name, t))
                    out = _to_uint8(distort(ref_float, t, level, rng))
                    name = f"I{r:02d}_{t:02d}_{level:02d}.png"
                    Image.fromarray(out).save(images / name, compress_level=1)
                    names.append(name)
                    outs.append(out)
                    bar.update(1)
            score, haar, ms = fr_scores(np.stack(outs), ref_u8)
            rows.extend(zip(names, [ref_file] * len(names), score, haar, ms))
        bar.close()
        with (tmp / "scores.csv").open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["dist_img", "ref_img", "score", "haarpsi", "ms_ssim"])
            for name, ref_file, s, h, m in rows:
                writer.writerow([name, ref_file, f"{s:.6f}", f"{h:.6f}", f"{m:.6f}"])
        manifest = {
            "version": MANIFEST_VERSION,
            "config": config.as_dict(),
            "references": {f"I{r:02d}": name for r, name in enumerate(references, start=1)},
            "metric": METRIC,
            "packages": _versions(),
            "counts": {"references": len(references), "distorted": len(rows)},
            "content_sha256": _content_hash(tmp),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if root.exists():  # a stale cache (other config or incomplete): swap it out
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / "data")
            os.replace(tmp, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def load_synthetic(root: str | Path | None = None, config: SyntheticConfig | None = None) -> list[IQARecord]:
    """The synthetic database as records, generated first if missing.

    With `config`, `root` (default: `default_root(config)`) is (re)generated to match it. With no
    config, an existing database at `root` is read as it is, and a missing one (no folder, or an empty
    one) is generated with the default config; a folder holding files but no manifest is an error, not
    overwritten. Scores are in [0, 1], higher = better; `raw_score` is the same number.
    """
    if root is None:
        root = default_root(config)
    root = Path(root).expanduser()
    if config is None and not (root / "manifest.json").exists() and root.is_dir() and any(root.iterdir()):
        raise DatasetError(f"{root / 'manifest.json'}: manifest not found (delete {root} to regenerate)")
    if config is not None or not (root / "manifest.json").exists():
        generate_synthetic(root, config or SyntheticConfig(), progress=True)
    manifest = _read_manifest(root)
    names = manifest.get("references")
    if not isinstance(names, dict):
        raise DatasetError(f"{root / 'manifest.json'}: no reference list")
    path = root / "scores.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: scores file not found")
    records = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"dist_img", "ref_img", "score"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                name = row["dist_img"]
                ref, dist, level = Path(name).stem.split("_")
                score = float(row["score"])
                if not 0.0 <= score <= 1.0:
                    raise ValueError(f"score {score} outside [0, 1]")
                records.append(
                    IQARecord(
                        path=str(root / "images" / name),
                        score=score,
                        raw_score=score,
                        database="synthetic",
                        distortion=int(dist),
                        level=int(level),
                        reference=ref,
                    )
                )
            except (ValueError, TypeError, AttributeError) as exc:
                raise DatasetError(f"{path}:{line}: bad row ({exc})") from None
    if not records:
        raise DatasetError(f"{path}: no rows")
    return records
