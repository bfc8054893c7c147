"""MNIST is read, checked and split as the tutorial's `input_data` did; bad files are named."""

import functools
import gzip
import http.server
import shutil
import threading

import numpy as np
import pytest

from sweep.errors import SweepError
from sweep.training.data import load_mnist

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def test_split_is_the_tutorials(mnist):
    assert mnist.train.x.shape == (55000, 28, 28) and mnist.train.x.dtype == np.float32
    assert mnist.val.x.shape == (5000, 28, 28) and mnist.test.x.shape == (10000, 28, 28)
    assert list(mnist.val.y[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the first training labels
    assert list(mnist.test.y[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.train.x.min() == 0.0 and mnist.train.x.max() == 1.0
    all_train = np.concatenate([mnist.val.y, mnist.train.y])
    assert list(np.bincount(all_train)) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_each_fold_validates_on_its_own_5000_training_file_images_and_trains_on_the_rest(mnist):
    file_x, file_y = np.concatenate([mnist.val.x, mnist.train.x]), np.concatenate([mnist.val.y, mnist.train.y])
    assert mnist.fold(0) is mnist  # fold 0 is the tutorial's split
    for k in (0, 1, 3, 11):
        fold = mnist.fold(k)
        assert fold.val_fold == k and len(fold.val.y) == 5000 and len(fold.train.y) == 55000
        np.testing.assert_array_equal(fold.val.x, file_x[5000 * k : 5000 * (k + 1)])
        for train, val, whole in ((fold.train.x, fold.val.x, file_x), (fold.train.y, fold.val.y, file_y)):
            # the training images are the file's others, in order: with the 5,000, they make the file, once each
            np.testing.assert_array_equal(np.concatenate([train[: 5000 * k], val, train[5000 * k :]]), whole)
        np.testing.assert_array_equal(fold.test.x, mnist.test.x)  # the test set is never touched
    np.testing.assert_array_equal(mnist.fold(3).fold(0).train.x, mnist.train.x)  # and back
    with pytest.raises(SweepError, match="fold 12 does not exist: there are 12, 0 to 11"):
        mnist.fold(12)


def test_limit_takes_the_first_images(mnist):
    small = mnist.limit(100, 50, 200)
    assert len(small.train.y) == 100 and len(small.val.y) == 50 and len(small.test.y) == 200
    np.testing.assert_array_equal(small.test.x, mnist.test.x[:200])


@pytest.fixture
def copy_dir(data_dir, tmp_path):
    for name in NAMES:
        shutil.copy(data_dir / f"{name}.gz", tmp_path / f"{name}.gz")
    return tmp_path


def test_plain_uncompressed_files_load(copy_dir, mnist):
    for name in NAMES[2:]:
        gz = copy_dir / f"{name}.gz"
        (copy_dir / name).write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    loaded = load_mnist(copy_dir)
    np.testing.assert_array_equal(loaded.test.x, mnist.test.x)


def rewrite(path, change):
    raw = bytearray(gzip.decompress(path.read_bytes()))
    path.write_bytes(gzip.compress(bytes(change(raw))))


def test_missing_directory(tmp_path):
    with pytest.raises(SweepError, match="does not exist"):
        load_mnist(tmp_path / "nope")


def test_missing_file(copy_dir):
    (copy_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SweepError, match="t10k-labels-idx1-ubyte.*not found"):
        load_mnist(copy_dir)


def test_truncated_file(copy_dir):
    rewrite(copy_dir / "t10k-images-idx3-ubyte.gz", lambda raw: raw[:-100])
    with pytest.raises(SweepError, match="t10k-images-idx3-ubyte.*truncated"):
        load_mnist(copy_dir)


def test_truncated_gzip(copy_dir):
    path = copy_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SweepError, match="train-labels-idx1-ubyte.gz: cannot decompress"):
        load_mnist(copy_dir)


def test_corrupted_pixel_fails_md5(copy_dir):
    def flip(raw):
        raw[5000] ^= 0xFF
        return raw

    rewrite(copy_dir / "t10k-images-idx3-ubyte.gz", flip)
    with pytest.raises(SweepError, match="t10k-images-idx3-ubyte: MD5 .* not the canonical"):
        load_mnist(copy_dir)


def test_swapped_image_and_label_files(copy_dir):
    images, labels = copy_dir / "t10k-images-idx3-ubyte.gz", copy_dir / "t10k-labels-idx1-ubyte.gz"
    images.rename(copy_dir / "tmp")
    labels.rename(images)
    (copy_dir / "tmp").rename(labels)
    with pytest.raises(SweepError, match="t10k-images-idx3-ubyte: magic number 2049 \\(a label file\\)"):
        load_mnist(copy_dir)


@pytest.fixture
def mirror(data_dir):
    """A web server on this machine serving the four .gz files, as a mirror of MNIST would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(data_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_mnist_is_downloaded_once_from_a_mirror_and_then_read_from_the_cache(mirror, tmp_path, monkeypatch, mnist):
    server, url = mirror
    monkeypatch.setenv("SWEEP_MNIST_URL", url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    downloaded = load_mnist(None)
    cached = tmp_path / "keras" / "datasets" / "mnist-idx"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{name}.gz" for name in NAMES)
    np.testing.assert_array_equal(downloaded.test.x, mnist.test.x)
    assert downloaded.folder is None and downloaded.md5 == mnist.md5
    server.shutdown()  # offline from now on: the cache answers
    again = load_mnist(None)
    np.testing.assert_array_equal(again.train.y, mnist.train.y)


def test_a_mirror_that_fails_is_one_line_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_MNIST_URL", "http://127.0.0.1:9/mnist/")  # nothing listens there
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(
        SweepError, match="cannot download MNIST from http://127.0.0.1:9/mnist/ .*--data-dir DIR"
    ) as info:
        load_mnist(None)
    assert "\n" not in str(info.value)
