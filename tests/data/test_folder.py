"""Image folders: PNG files written by the test, read back exactly (labels, splits, modes, sizes, resolution)."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from pixelprior.data import load_dataset


def write(path, array: np.ndarray, mode: str | None = None) -> np.ndarray:
    """Save ``array`` ((H, W) gray or (H, W, C)) as a PNG at ``path``, creating folders; return it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)
    return array


def gray(value: int, size=(4, 6)) -> np.ndarray:
    """A gray (H, W) image whose pixels are ``value + column``: it names itself and shows the orientation."""
    return (value + np.arange(size[1])[None, :].repeat(size[0], 0)).astype(np.uint8)


@pytest.fixture
def labelled_folder(tmp_path):
    """ROOT/{cat,dog}/NN.png: ten 4x6 gray images per class; image k of class c is ``gray(12 * (10 c + k))``."""
    images = {}
    for c, name in enumerate(["cat", "dog"]):
        for k in range(10):
            value = (10 * c + k) * 12
            images[(name, k)] = write(tmp_path / name / f"{k:02d}.png", gray(value))
    return tmp_path, images


def as_set(x: torch.Tensor) -> set[bytes]:
    return {bytes(image.numpy().astype(np.uint8).tobytes()) for image in x}


def test_folder_with_class_subfolders_and_a_fixed_split(labelled_folder):
    root, images = labelled_folder
    train, test = load_dataset(str(root), "train"), load_dataset(f"folder:{root}", "test")
    assert (len(train), len(test)) == (18, 2)  # 10 % of each class to test
    for data in (train, test):
        assert (data.num_values, data.in_channels, data.sample_size) == (256, 1, (4, 6))
        assert data.num_classes == 2 and data.class_names == ["cat", "dog"]
        for image, label in zip(data.x, data.labels, strict=True):  # every image comes back whole, with its class
            name = data.class_names[int(label)]
            assert any(np.array_equal(image[0].numpy(), images[(name, k)]) for k in range(10))
    assert sorted(test.labels.tolist()) == [0, 1]  # both classes in the test part
    assert as_set(train.x) | as_set(test.x) == as_set(torch.from_numpy(np.stack(list(images.values()))[:, None]))
    assert torch.equal(load_dataset(str(root), "test").x, test.x)  # fixed


def test_train_and_test_subfolders_share_the_class_indices(tmp_path):
    for k in range(3):
        write(tmp_path / "train" / "apple" / f"{k}.png", gray(10 * k))
        write(tmp_path / "train" / "pear" / f"{k}.png", gray(100 + 10 * k))
    write(tmp_path / "test" / "pear" / "0.png", gray(200))  # the test part lacks 'apple'
    write(tmp_path / "test" / "quince" / "0.png", gray(210))  # and has a class train lacks
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert train.class_names == test.class_names == ["apple", "pear", "quince"] and train.num_classes == 3
    assert (len(train), len(test)) == (6, 2)
    assert sorted(train.labels.tolist()) == [0, 0, 0, 1, 1, 1] and test.labels.tolist() == [1, 2]
    assert np.array_equal(test.x[0, 0].numpy(), gray(200))


def test_unlabelled_folder_and_validation_folder(tmp_path):
    write(tmp_path / "train" / "a.png", gray(0))
    write(tmp_path / "train" / "b.png", gray(50))
    write(tmp_path / "validation" / "c.png", gray(90))
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert train.labels is None and train.num_classes is None and train[0].keys() == {"x"}
    assert len(train) == 2 and np.array_equal(test.x[0, 0].numpy(), gray(90))


def test_gray_and_rgb_make_an_rgb_source(tmp_path):
    rgb = write(tmp_path / "train" / "rgb.png", np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8))
    palette = Image.fromarray(gray(40)).convert("P")  # no transparency: read as RGB
    os.makedirs(tmp_path / "test")
    palette.save(tmp_path / "test" / "p.png")
    write(tmp_path / "train" / "gray.png", gray(7))
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert train.in_channels == test.in_channels == 3 and train.sample_size == (4, 6)
    # sorted paths: gray.png, rgb.png; gray images are repeated over R, G, B
    assert torch.equal(train.x[0], torch.from_numpy(gray(7))[None].repeat(3, 1, 1))
    assert torch.equal(train.x[1], torch.from_numpy(rgb).permute(2, 0, 1))
    assert torch.equal(test.x[0], torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1))


def test_alpha_and_deep_images(tmp_path):
    opaque = np.dstack([np.full((4, 6, 3), 9, np.uint8), np.full((4, 6), 255, np.uint8)])
    write(tmp_path / "ok" / "train" / "a.png", opaque, "RGBA")
    write(tmp_path / "ok" / "test" / "b.png", np.dstack([gray(3), np.full((4, 6), 255, np.uint8)]), "LA")
    data = load_dataset(str(tmp_path / "ok"), "train")
    assert data.in_channels == 3 and torch.equal(data.x[0], torch.full((3, 4, 6), 9, dtype=torch.uint8))

    transparent = opaque.copy()
    transparent[0, 0, 3] = 0
    write(tmp_path / "clear" / "a.png", transparent, "RGBA")
    write(tmp_path / "clear" / "b.png", opaque, "RGBA")
    with pytest.raises(ValueError, match="transparent pixels in .*a.png"):
        load_dataset(str(tmp_path / "clear"))

    keyed = tmp_path / "keyed"  # a gray PNG whose value 0 is transparent (a tRNS colour key)
    os.makedirs(keyed)
    Image.fromarray(gray(0)).save(keyed / "a.png", transparency=0)
    write(keyed / "b.png", gray(9))
    with pytest.raises(ValueError, match="transparent pixels in .*a.png"):
        load_dataset(str(keyed))

    os.makedirs(tmp_path / "deep")
    Image.fromarray(np.full((4, 6), 1000, np.uint16)).save(tmp_path / "deep" / "a.png")  # 16-bit PNG
    write(tmp_path / "deep" / "b.png", gray(0))
    with pytest.raises(ValueError, match="Expected 8-bit images .* got mode 'I;16' in .*a.png"):
        load_dataset(str(tmp_path / "deep"))


def test_mixed_sizes_need_a_resolution(tmp_path):
    for k in range(3):
        write(tmp_path / f"small{k}.png", np.full((4, 4), 40 * k, np.uint8))
    write(tmp_path / "wide.png", np.full((6, 8), 200, np.uint8))
    with pytest.raises(ValueError, match=r"one size .* got sizes 4x4 \(3 images\), 6x8 \(1 images\)"):
        load_dataset(str(tmp_path))
    train, test = load_dataset(str(tmp_path), resolution=4), load_dataset(str(tmp_path), "test", resolution=4)
    assert train.sample_size == test.sample_size == (4, 4) and len(train) + len(test) == 4
    # constant images stay constant through crop and bilinear resize
    values = sorted(int(v) for v in torch.cat([train.x, test.x]).amax(dim=(1, 2, 3)))
    assert values == [0, 40, 80, 200]
    assert all(bool((image == image.flatten()[0]).all()) for image in torch.cat([train.x, test.x]))


def test_resolution_crops_the_centre(tmp_path):
    wide = write(tmp_path / "train" / "a.png", np.arange(32, dtype=np.uint8).reshape(4, 8))
    write(tmp_path / "test" / "b.png", np.zeros((4, 8), np.uint8))
    data = load_dataset(str(tmp_path), resolution=4)  # 4x8 -> the centred 4x4 box, columns 2..5, no resampling
    assert torch.equal(data.x[0, 0], torch.from_numpy(wide[:, 2:6]))
    half = load_dataset(str(tmp_path), resolution=(2, 4)).x[0, 0].long()  # the whole image, halved (bilinear)
    assert half.shape == (2, 4) and int(half.min()) >= 0 and int(half.max()) <= 31
    assert (half[:, 1:] > half[:, :-1]).all() and (half[1] > half[0]).all()  # the ramp keeps its direction


def test_binarize_and_num_bits_on_a_folder(labelled_folder):
    root, _ = labelled_folder
    full = load_dataset(str(root))
    assert torch.equal(load_dataset(str(root), binarize=True).x.long(), (full.x.long() >= 128).long())
    three = load_dataset(str(root), num_bits=3)
    assert three.num_values == 8 and torch.equal(three.x.long(), full.x.long() // 32)


def test_bad_folders(tmp_path):
    os.makedirs(tmp_path / "empty" / "sub")
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="found none"):
        load_dataset(str(tmp_path / "empty"))
    write(tmp_path / "one" / "a.png", gray(0))
    with pytest.raises(ValueError, match="at least 2"):
        load_dataset(str(tmp_path / "one"))
    os.makedirs(tmp_path / "halves" / "test")
    write(tmp_path / "halves" / "train" / "a.png", gray(0))
    with pytest.raises(ValueError, match="the test split"):
        load_dataset(str(tmp_path / "halves"))


# --- bad files: every one is a ValueError naming the file -----------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims ``width x height`` gray pixels and whose data is tiny: a decompression
    bomb's header, with nothing to decompress (PIL's check is on the header, at open)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def encoded(fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def corrupt_png() -> bytes:
    data = bytearray(encoded("PNG"))
    start = data.index(b"IDAT") + 6
    data[start : start + 24] = bytes(b ^ 0xFF for b in data[start : start + 24])  # the pixel stream, not the header
    return bytes(data)


def text_chunk_bomb() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (2 * PngImagePlugin.MAX_TEXT_CHUNK), zip=True)  # 2 KB that inflate to 2 MB
    return encoded("PNG", pnginfo=info)


# file name -> (its bytes, what the error says), each also served as a Hugging Face dataset's image bytes
BAD_IMAGE_BYTES = {
    "empty.png": (lambda: b"", r"empty \(0 bytes\)"),
    "truncated.png": (lambda: encoded("PNG")[:150], "truncated"),
    "text.png": (lambda: b"these are not the pixels you are looking for\n" * 3, "cannot identify image file"),
    "bomb.png": (lambda: png_claiming(100_000, 100_000), "MAX_IMAGE_PIXELS"),  # 10^10 pixels: PIL's error
    "warned-bomb.png": (lambda: png_claiming(10_000, 10_000), "MAX_IMAGE_PIXELS"),  # 10^8: PIL would only warn
    "text-chunk-bomb.png": (text_chunk_bomb, "MAX_TEXT_CHUNK"),
    "corrupt.png": (corrupt_png, "broken data stream"),
    "truncated.jpg": (lambda: encoded("JPEG")[:300], "Truncated File Read|truncated"),
    "truncated.tif": (lambda: encoded("TIFF")[:100], "truncated"),
    "garbage.gif": (lambda: encoded("GIF")[:20] + bytes(range(50)), "cannot identify image file"),
}


def _fifo(path):
    os.mkfifo(path)  # opening it would wait for a writer for ever


# file name -> (how to make it at a path, what the error says)
BAD_IMAGE_ENTRIES = {
    "dangling.png": (lambda path: os.symlink(path.parent / "gone.png", path), "No such file"),
    "pipe.png": (_fifo, "not a regular file"),
}


def folder_with(tmp_path, name: str, make) -> str:
    """Three good 16x16 gray images (the size of the bad ones' headers) and one bad entry ``name``, in one folder."""
    for k in range(3):
        write(tmp_path / f"good{k}.png", gray(10 * k, size=(16, 16)))
    make(tmp_path / name)
    return str(tmp_path / name)


@pytest.mark.parametrize("name", list(BAD_IMAGE_BYTES) + list(BAD_IMAGE_ENTRIES))
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")  # PIL's own warning on the truncated TIFF, before our error
def test_bad_image_files_are_named_value_errors(name, tmp_path):
    if name in BAD_IMAGE_BYTES:
        data, message = BAD_IMAGE_BYTES[name]
        bad = folder_with(tmp_path, name, lambda path: path.write_bytes(data()))
    else:
        make, message = BAD_IMAGE_ENTRIES[name]
        bad = folder_with(tmp_path, name, make)
    with pytest.raises(ValueError, match=message) as error:  # as a trainer does, before its first step
        for split in ("train", "test"):  # headers are read for both, pixels for the split loaded
            load_dataset(str(tmp_path), split)
    assert repr(bad) in str(error.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path):
    bad = folder_with(tmp_path, "locked.png", lambda path: write(path, gray(0)))
    os.chmod(bad, 0)
    with pytest.raises(ValueError, match="Permission denied") as error:
        load_dataset(str(tmp_path))
    assert repr(bad) in str(error.value)


def test_cli_names_a_bad_image_in_one_line(tmp_path, capsys):
    from pixelprior.cli import main

    bad = folder_with(tmp_path / "images", "text.png", lambda path: path.write_text("not an image"))
    argv = ["train", "--model", "pixelcnn_mnist", "--dataset", str(tmp_path / "images"), "--output_dir", "unused"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pixelprior train: error: Expected an image file") and repr(bad) in err
    assert err.count("\n") == 1


# --- links: each real file once, never in both splits ---------------------------------------------------------------


def real_files(x: torch.Tensor) -> list[bytes]:
    return sorted(bytes(image.numpy().tobytes()) for image in x)


def test_symlink_loops_are_skipped_and_each_file_counts_once(tmp_path):
    root = tmp_path / "root"
    images = {}
    for split, name, k in [("train", "cat", 0), ("train", "cat", 1), ("train", "dog", 2), ("test", "cat", 3)]:
        images[k] = write(root / split / name / f"{k}.png", gray(20 * k))
    write(root / "test" / "dog" / "4.png", gray(80))
    os.symlink(root, root / "train" / "cat" / "loop")  # back to the root: test images would land in train
    os.symlink(root / "train", root / "train" / "dog" / "up")  # back to the split's root
    os.symlink(root / "train" / "cat", root / "train" / "cat" / "again")  # back to itself
    os.symlink(root / "train" / "cat" / "0.png", root / "train" / "cat" / "copy.png")  # one file, two names
    os.makedirs(root / "train" / "cat" / "deeper")
    os.symlink(root / "train" / "dog", root / "train" / "dog" / "self")
    train, test = load_dataset(str(root), "train"), load_dataset(str(root), "test")
    assert (len(train), len(test)) == (3, 2)  # not 984 and 98
    assert real_files(train.x[:, 0]) == real_files(torch.from_numpy(np.stack([images[k] for k in (0, 1, 2)])))
    assert not set(real_files(train.x)) & set(real_files(test.x))  # no image in both splits
    assert train.class_names == ["cat", "dog"] and sorted(train.labels.tolist()) == [0, 0, 1]


def test_an_unsplit_folder_with_links_splits_real_files(tmp_path):
    for k in range(12):
        write(tmp_path / f"{k:02d}.png", gray(10 * k))
    os.makedirs(tmp_path / "more")
    for k in range(6):  # every file a second time under another name, and a loop
        os.symlink(tmp_path / f"{k:02d}.png", tmp_path / "more" / f"link{k}.png")
    os.symlink(tmp_path, tmp_path / "more" / "loop")
    train, test = load_dataset(str(tmp_path), "train"), load_dataset(str(tmp_path), "test")
    assert len(train) + len(test) == 12 and not set(real_files(train.x)) & set(real_files(test.x))


def test_a_file_in_both_splits_or_two_classes_is_an_error(tmp_path):
    write(tmp_path / "a" / "train" / "cat" / "0.png", gray(0))
    write(tmp_path / "a" / "test" / "cat" / "1.png", gray(10))
    os.symlink(tmp_path / "a" / "test" / "cat", tmp_path / "a" / "train" / "cat" / "linked")
    with pytest.raises(ValueError, match="in one split, got .*1.png.* in the train split .* and in the test split"):
        load_dataset(str(tmp_path / "a"), "test")
    write(tmp_path / "b" / "cat" / "0.png", gray(0))
    write(tmp_path / "b" / "dog" / "1.png", gray(10))
    os.symlink(tmp_path / "b" / "cat" / "0.png", tmp_path / "b" / "dog" / "0.png")
    with pytest.raises(ValueError, match=r"in one class, got .*0.png.* in class 'cat' .* and in class 'dog'"):
        load_dataset(str(tmp_path / "b"))
