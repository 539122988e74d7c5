"""Image-folder data source: a folder or ``.tar`` / ``.tar.gz`` archive laid out ``<split>/<class>/<file>``.

Any image data set saved as JPEG or PNG files, one folder per class, loads with one config key::

    config.dataset.name = "image_folder"
    config.dataset.path = "/data/my_images.tar.gz"   # or a folder holding train/ and test/

Labels are the positions of the class names in ``classes`` (default: the class folders' names,
sorted). The images are decoded once with Pillow, in parallel threads (Pillow releases the GIL
while it decodes), and the uint8 NHWC arrays are cached outside the repository, in
``$EXTREMEQ_CACHE`` or else ``~/.cache/extremeq``, under a key made of the archive's sha256 (for a
folder: the sha256 of its listing of relative paths, sizes and modification times), the class
list and the splits; a changed archive or folder gets a new key, so a stale cache is never read.
After that the data set is an :class:`extremeq.data.arrays.ArrayDataset` like every other
in-memory source.

The archive may hold the layout under one top folder (``cifar10/train/cat/0.jpg``). Files whose
names start with ``.`` and files that are not ``.jpg`` / ``.jpeg`` / ``.png`` are ignored. A
missing split, a class missing from a split or empty in it, a class folder outside a given class
list, an undecodable file and mixed image sizes each stop with an error naming the file or folder.
Grayscale images give one channel; if any image is in colour, all are RGB.

CIFAR-10 (Krizhevsky 2009) without a path reads ``$EXTREMEQ_CIFAR10``, else
``<repo>/../shared/data/cifar10_jpeg.tar.gz`` (:func:`default_cifar10_path`), with the labels in the
original CIFAR-10 order (:data:`CIFAR10_CLASSES`).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import tarfile
from pathlib import Path

import numpy as np

from extremeq.data.arrays import ArrayDataset, checked_array_dataset
from extremeq.data.checks import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Bump when the cached arrays' layout or the decoding changes: old cache files are then not read.
CACHE_VERSION = 1
# Each split is stored in the order of np.random.default_rng(SHUFFLE_SEED).permutation(n).
SHUFFLE_SEED = 0

_REPO_ROOT = Path(__file__).resolve().parents[2]


class ImageFolderError(DataError):
    """An image folder or archive does not have the ``<split>/<class>/<file>`` layout or holds a bad file."""


def default_cifar10_path() -> Path:
    """``$EXTREMEQ_CIFAR10`` if set, else ``<repo>/../shared/data/cifar10_jpeg.tar.gz``."""
    env = os.environ.get("EXTREMEQ_CIFAR10")
    if env:
        return Path(env)
    return _REPO_ROOT.parent / "shared" / "data" / "cifar10_jpeg.tar.gz"


def cache_dir() -> Path:
    """``$EXTREMEQ_CACHE`` if set, else ``~/.cache/extremeq``."""
    env = os.environ.get("EXTREMEQ_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "extremeq"


def is_archive(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return name.endswith((".tar", ".tar.gz", ".tgz"))


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder_listing(root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under ``root``, sorted; directories as size -1."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        for d in dirnames:
            rows.append((d if rel_dir == "." else f"{rel_dir}/{d}", -1, 0))
        for f in filenames:
            st = os.stat(os.path.join(dirpath, f))
            rows.append((f if rel_dir == "." else f"{rel_dir}/{f}", st.st_size, st.st_mtime_ns))
    return sorted(rows)


def cache_key(path: str | os.PathLike, classes=None, splits=SPLITS, per_class: int | None = None) -> str:
    """sha256 over the archive's sha256 (or the folder's listing), classes, splits and ``per_class``."""
    path = Path(path)
    classes = list(classes) if classes else None
    h = hashlib.sha256(f"v{CACHE_VERSION}|{classes}|{list(splits)}|{per_class}|".encode())
    if path.is_dir():
        for rel, size, mtime in _folder_listing(path):
            h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    else:
        h.update(_sha256_file(path).encode())
    return h.hexdigest()


def _entries(path: Path):
    """Yields (relative posix path, is_dir, read) for the folder or archive; read() returns the bytes."""
    if path.is_dir():
        for rel, size, _ in _folder_listing(path):
            full = path / rel
            yield rel, size < 0, full.read_bytes
        return
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError) as e:
        raise ImageFolderError(f"{path}: not a readable .tar / .tar.gz archive ({e}).") from e
    with tar:
        for member in tar:
            rel = member.name
            while rel.startswith("./"):
                rel = rel[2:]
            rel = rel.strip("/")
            if not rel:
                continue
            if member.isdir():
                yield rel, True, None
            elif member.isfile():
                data = tar.extractfile(member).read()
                yield rel, False, (lambda d=data: d)


def _collect(path: Path, splits):
    """{split: {class: [(relative path, bytes), ...]}} from the layout ``[top/]<split>/<class>/<file>``."""
    found = {s: {} for s in splits}
    prefixes = set()
    for rel, is_dir, read in _entries(path):
        parts = rel.split("/")
        if is_dir:
            # <prefix>/<split>/<class>/: registers the class, so an empty one is noticed.
            if len(parts) >= 2 and parts[-2] in found:
                prefixes.add(tuple(parts[:-2]))
                found[parts[-2]].setdefault(parts[-1], [])
            continue
        if len(parts) < 3 or parts[-3] not in found or not _is_image(rel):
            continue
        prefixes.add(tuple(parts[:-3]))
        found[parts[-3]].setdefault(parts[-2], []).append((rel, read()))
    if len(prefixes) > 1:
        tops = sorted("/".join(p) or "." for p in prefixes)
        raise ImageFolderError(
            f"{path}: the splits {list(splits)} appear under several folders {tops}; "
            "keep one <split>/<class>/<file> tree."
        )
    for split in splits:
        if not found[split]:
            raise ImageFolderError(
                f"{path}: split {split!r} is missing (no {split}/<class>/<image> files); the layout must be "
                f"{'/'.join(splits)} folders, each holding one folder of .jpg/.png images per class."
            )
        for cls, files in found[split].items():
            if not files:
                raise ImageFolderError(f"{path}: class folder {split}/{cls} holds no .jpg/.png image.")
    return found


def _check_classes(path: Path, found, classes) -> tuple[str, ...]:
    if classes is None:
        classes = sorted(set().union(*(set(c) for c in found.values())))
    classes = tuple(classes)
    if len(set(classes)) != len(classes):
        raise ImageFolderError(f"class list {list(classes)} repeats a name.")
    for split, by_class in found.items():
        missing = [c for c in classes if c not in by_class]
        if missing:
            raise ImageFolderError(
                f"{path}: split {split!r} lacks the class folder(s) {[f'{split}/{c}' for c in missing]}."
            )
        extra = sorted(set(by_class) - set(classes))
        if extra:
            raise ImageFolderError(
                f"{path}: class folder(s) {[f'{split}/{c}' for c in extra]} are not in "
                f"the class list {list(classes)}; add them or remove the folders."
            )
    return classes


def _decode(item):
    from PIL import Image  # pylint: disable=g-import-not-at-top

    rel, data = item
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB")
            x = np.asarray(im, np.uint8)
    except Exception as e:  # Pillow raises several types for a bad file.
        raise ImageFolderError(
            f"{rel}: cannot decode this image ({type(e).__name__}: {e}); remove or replace the file."
        ) from e
    return x if x.ndim == 3 else x[..., None]


def _decode_split(path: Path, by_class, classes, workers: int, per_class: int | None):
    items, labels = [], []
    for label, cls in enumerate(classes):
        for rel, data in sorted(by_class[cls])[:per_class]:
            items.append((rel, data))
            labels.append(label)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(_decode, items, chunksize=256))
    first = images[0]
    for (rel, _), x in zip(items, images):
        if x.shape[:2] != first.shape[:2]:
            raise ImageFolderError(
                f"{path}: {rel} is {x.shape[1]}x{x.shape[0]} pixels but {items[0][0]} is "
                f"{first.shape[1]}x{first.shape[0]}; an image folder needs one image size (resize them first)."
            )
    return images, np.asarray(labels, np.int32)


def _stack(images, channels: int) -> np.ndarray:
    return np.stack([np.repeat(x, channels, -1) if x.shape[-1] != channels else x for x in images])


def decode_image_folder(
    path: str | os.PathLike, *, classes=None, splits=SPLITS, workers: int | None = None, per_class: int | None = None
):
    """Decodes the images (no cache): ``({split: (x uint8 NHWC, y int32)}, classes)``.

    ``per_class``: only the first ``per_class`` files (by path) of each class of each split (a quick
    subset for smoke tests); ``None``: all.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image folder or archive {str(path)!r} not found.")
    found = _collect(path, splits)
    classes = _check_classes(path, found, classes)
    workers = workers or os.cpu_count() or 1
    decoded = {s: _decode_split(path, found[s], classes, workers, per_class) for s in splits}
    sizes = {s: decoded[s][0][0].shape[:2] for s in splits}
    if len(set(sizes.values())) > 1:
        raise ImageFolderError(f"{path}: the splits' image sizes differ {sizes}; resize them to one size.")
    # A colour image anywhere makes every split RGB.
    channels = max(x.shape[-1] for s in splits for x in decoded[s][0])
    out = {}
    for s in splits:
        images, labels = decoded[s]
        # A fixed permutation, so that the first ``limit`` training images are a random subset
        # rather than the first classes (files are read class by class).
        perm = np.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
        out[s] = (_stack([images[i] for i in perm], channels), labels[perm])
    return out, classes


def read_image_folder(
    path: str | os.PathLike,
    *,
    classes=None,
    splits=SPLITS,
    cache: bool = True,
    workers: int | None = None,
    per_class: int | None = None,
):
    """:func:`decode_image_folder` through the cache: ``({split: (x, y)}, classes)``.

    The cache file is ``cache_dir() / f"image_folder-{cache_key(...)}.npz"``, written atomically.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image folder or archive {str(path)!r} not found.")
    if not cache:
        return decode_image_folder(path, classes=classes, splits=splits, workers=workers, per_class=per_class)
    file = cache_dir() / f"image_folder-{cache_key(path, classes, splits, per_class)}.npz"
    if file.is_file():
        try:
            with np.load(file, allow_pickle=False) as f:
                return ({s: (f[f"x_{s}"], f[f"y_{s}"]) for s in splits}, tuple(str(c) for c in f["classes"]))
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache file is rebuilt below
    arrays, classes = decode_image_folder(path, classes=classes, splits=splits, workers=workers, per_class=per_class)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npz")
    payload = {f"x_{s}": arrays[s][0] for s in splits}
    payload.update({f"y_{s}": arrays[s][1] for s in splits})
    np.savez(tmp, classes=np.asarray(classes), **payload)
    os.replace(tmp, file)
    return arrays, classes


def load_image_folder(
    path: str | os.PathLike,
    *,
    name: str = "image_folder",
    classes=None,
    limit: int | None = None,
    cache: bool = True,
    workers: int | None = None,
    per_class: int | None = None,
) -> ArrayDataset:
    """The ``train`` and ``test`` splits of an image folder or archive as an ``ArrayDataset``.

    Args:
      path: a folder, ``.tar``, ``.tar.gz`` or ``.tgz`` holding ``train/<class>/<file>`` and
        ``test/<class>/<file>`` (optionally under one top folder).
      name: the data set's name in the result.
      classes: class names in label order; ``None``: the class folders' names, sorted.
      limit: keep the first ``limit`` training images (each split is stored in a fixed shuffled
        order, ``SHUFFLE_SEED``, so these are a random subset); the rest become ``x_val``.
      cache: read and write the decoded arrays under :func:`cache_dir`.
      workers: decoding threads (default: the CPU count).
      per_class: decode only the first ``per_class`` files of each class and split (smoke tests).
    """
    arrays, classes = read_image_folder(path, classes=classes, cache=cache, workers=workers, per_class=per_class)
    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    return checked_array_dataset(
        name,
        x_train,
        y_train,
        x_test,
        y_test,
        len(classes),
        limit,
        origin=str(path),
        whence=f"the {len(classes)} class folders",
    )


def load_named(
    name: str, path: str | os.PathLike | None, *, limit: int | None = None, num_classes: int | None = None
) -> ArrayDataset:
    """Source ``image_folder`` of ``load_arrays``: CIFAR-10's default archive and class order for
    ``cifar10``, else the folder or archive ``path`` with sorted class names. The labels are the
    class folders, so a given ``num_classes`` must equal their number."""
    ds = _load_named(name, path, limit)
    if num_classes is not None and num_classes != ds.num_classes:
        raise ImageFolderError(
            f"{path or name}: config.dataset.num_classes = {num_classes}, but the data has {ds.num_classes} "
            "class folders; set num_classes to 0 (the folders decide) or to their number"
        )
    return ds


def _load_named(name, path, limit):
    if name == "cifar10":
        return load_cifar10(path or None, limit=limit)
    if not path:
        raise ValueError(
            f"source 'image_folder' for data set {name!r} needs config.dataset.path: a folder or "
            ".tar/.tar.gz laid out train/<class>/<image> and test/<class>/<image>."
        )
    return load_image_folder(path, name=name, limit=limit)


def load_cifar10(
    path: str | os.PathLike | None = None, *, limit: int | None = None, cache: bool = True, per_class: int | None = None
) -> ArrayDataset:
    """CIFAR-10 from an image folder or archive (default :func:`default_cifar10_path`), labels in
    :data:`CIFAR10_CLASSES` order."""
    path = Path(path) if path else default_cifar10_path()
    if not path.exists():
        raise FileNotFoundError(
            f"CIFAR-10 archive {str(path)!r} not found. Point $EXTREMEQ_CIFAR10 (or config.dataset.path) "
            "at a folder or .tar.gz laid out train/<class>/<image> and test/<class>/<image>, or use "
            "config.dataset.source='tfds' with a prepared TFDS cifar10."
        )
    return load_image_folder(
        path, name="cifar10", classes=CIFAR10_CLASSES, limit=limit, cache=cache, per_class=per_class
    )
