"""meta_dist.compat.l2l.vision: FullOmniglot on the real release, the two Omniglot networks, and
RandomClassRotation's per-class, per-task seeded rotations.

The FullOmniglot tests read the real Omniglot release (tests/conftest.py's OMNIGLOT_SOURCE) and skip
without it; a tiny fake release in a temporary folder covers the extracted-folder layouts.
"""
import inspect
import pickle
import random
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as tv
from torchvision.transforms import functional as TF

from meta_dist.compat import l2l
from meta_dist.compat.l2l.data import transforms as T
from meta_dist.compat.l2l.vision.transforms import RandomClassRotation, RotateItem, rotate
from meta_dist.models.conv4 import Conv4
from meta_dist.models.mlp import MLP
from meta_dist.tasks import omniglot as reader
from tests.conftest import OMNIGLOT_SOURCE

needs_omniglot = pytest.mark.skipif(not (OMNIGLOT_SOURCE / "images_background.zip").is_file(),
                                    reason=f"real Omniglot not found at {OMNIGLOT_SOURCE}")


@pytest.fixture(scope="module")
def omniglot():
    dataset = l2l.vision.datasets.FullOmniglot(OMNIGLOT_SOURCE)
    yield dataset
    dataset.close()


# -- FullOmniglot --------------------------------------------------------------------------------------
@needs_omniglot
def test_full_omniglot_classes_items_and_labels(omniglot):
    assert len(omniglot) == 32460 and len(omniglot.characters) == 1623
    assert omniglot.targets == sorted(omniglot.targets)
    assert np.bincount(omniglot.targets).tolist() == [20] * 1623
    background = {d.key for d in reader.list_drawings(reader.locate(OMNIGLOT_SOURCE), {})
                  if d.member.startswith("images_background/")}
    assert len(background) == 964 and set(omniglot.characters[:964]) == background
    image, label = omniglot[20 * 1000 + 3]
    assert isinstance(image, Image.Image) and image.mode == "L" and image.size == (105, 105)
    assert type(label) is int and label == 1000
    assert omniglot[-1][1] == 1622


@needs_omniglot
def test_full_omniglot_reads_the_drawings_of_the_omniglot_reader(omniglot):
    zips = {}
    drawings = reader.list_drawings(reader.locate(OMNIGLOT_SOURCE), zips)
    for i in (0, 12345, 19280, len(drawings) - 1):  # both halves
        expected = reader.load_drawing(drawings[i], zips)[:, :, 0]
        small = omniglot.image(i).resize((28, 28), Image.LANCZOS)
        assert np.array_equal(255 - np.asarray(small), expected)
    for handle in zips.values():
        handle.close()


@needs_omniglot
def test_full_omniglot_transforms_as_the_classic_script():
    dataset = l2l.vision.datasets.FullOmniglot(OMNIGLOT_SOURCE, transform=tv.Compose([
        tv.Resize(28, interpolation=Image.LANCZOS), tv.ToTensor(), lambda x: 1.0 - x]),
        target_transform=lambda y: y + 1000)
    x, y = dataset[40]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 1002
    zips = {}
    expected = reader.load_drawing(reader.list_drawings(reader.locate(OMNIGLOT_SOURCE), zips)[40], zips)
    torch.testing.assert_close(x[0], torch.from_numpy(expected[:, :, 0] / 255.0).float(), atol=1e-6, rtol=0)


@needs_omniglot
def test_metadataset_reads_targets_without_decoding(omniglot, monkeypatch):
    def no_decoding(self, index):
        raise AssertionError("MetaDataset decoded an image to read its label")

    monkeypatch.setattr(type(omniglot), "image", no_decoding)
    meta = l2l.data.MetaDataset(omniglot)
    assert len(meta.labels) == 1623 and meta.labels_to_indices[5] == list(range(100, 120))


@needs_omniglot
def test_full_omniglot_pickles_without_open_zips(omniglot, tmp_path):
    omniglot.image(0)  # opens the zips
    copy = pickle.loads(pickle.dumps(omniglot))
    assert copy._zips == {} and copy.targets == omniglot.targets
    assert np.array_equal(np.asarray(copy.image(7)), np.asarray(omniglot.image(7)))
    torchvision_root = tmp_path / "root"
    (torchvision_root / "omniglot-py").mkdir(parents=True)
    for half in reader.HALVES:
        (torchvision_root / "omniglot-py" / f"{half}.zip").symlink_to(OMNIGLOT_SOURCE / f"{half}.zip")
    assert len(l2l.vision.datasets.FullOmniglot(torchvision_root)) == 32460


def fake_release(root, zipped=False):
    """Two characters per half, three drawings each, as extracted folders (or zips) under `root`."""
    g = np.random.default_rng(0)
    for half, alphabet in zip(reader.HALVES, ("Alpha", "Beta")):
        for c in (1, 2):
            folder = root / half / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for drawer in (1, 2, 3):
                pixels = (g.random((105, 105)) > 0.5).astype(np.uint8) * 255
                Image.fromarray(pixels).convert("1").save(folder / f"{c:04d}_{drawer:02d}.png")
        if zipped:
            with zipfile.ZipFile(root / f"{half}.zip", "w") as zf:
                for path in sorted((root / half).rglob("*.png")):
                    zf.write(path, path.relative_to(root).as_posix())
    return root


def test_full_omniglot_on_extracted_folders(tmp_path):
    dataset = l2l.vision.datasets.FullOmniglot(fake_release(tmp_path))
    assert len(dataset) == 12 and dataset.characters == ["Alpha/character01", "Alpha/character02",
                                                         "Beta/character01", "Beta/character02"]
    assert dataset.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    image, label = dataset[7]
    expected = Image.open(tmp_path / "images_evaluation/Beta/character01/0001_02.png").convert("L")
    assert label == 2 and np.array_equal(np.asarray(image), np.asarray(expected))


def test_full_omniglot_errors(tmp_path):
    with pytest.raises(ValueError, match="downloads nothing"):
        l2l.vision.datasets.FullOmniglot(tmp_path, download=True)
    with pytest.raises(ValueError, match="FullOmniglot: root"):
        l2l.vision.datasets.FullOmniglot(tmp_path / "missing")
    with pytest.raises(ValueError, match="images_background.zip"):
        l2l.vision.datasets.FullOmniglot(tmp_path)


# -- models --------------------------------------------------------------------------------------------
def test_omniglot_cnn_is_the_strided_conv4():
    torch.manual_seed(0)
    model = l2l.vision.models.OmniglotCNN(5)
    assert isinstance(model, Conv4) and model.strided and model.hidden_size == 64
    reference = Conv4((1, 28, 28), 64, 5, strided=True)
    assert [(k, p.shape) for k, p in model.named_parameters()] == \
        [(k, p.shape) for k, p in reference.named_parameters()]
    x = torch.rand(10, 1, 28, 28)
    out = model(x)
    assert out.shape == (10, 5)
    assert torch.equal(model(x.view(10, 784)), out)  # flat rows are viewed as images
    assert "stats_rows" in inspect.signature(model.forward).parameters
    reference.load_state_dict(model.state_dict())
    torch.testing.assert_close(reference(x, stats_rows=4), model(x, stats_rows=4))


@pytest.mark.parametrize("layers", [1, 2, 6])
def test_omniglot_cnn_depth_and_width(layers):
    model = l2l.vision.models.OmniglotCNN(output_size=3, hidden_size=16, layers=layers)
    assert len(model.convs) == len(model.norms) == layers
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 3)
    with pytest.raises(ValueError):
        l2l.vision.models.OmniglotCNN(layers=0)


def test_omniglot_fc_is_an_mlp():
    model = l2l.vision.models.OmniglotFC(28 ** 2, 5)
    assert isinstance(model, MLP)
    widths = [m.out_features for m in model.net if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 128, 64, 64, 5] and model.net[0].in_features == 784
    x = torch.rand(6, 1, 28, 28)
    assert model(x).shape == (6, 5) and torch.equal(model(x), model(x.view(6, -1)))
    small = l2l.vision.models.OmniglotFC(784, 3, sizes=[32])
    assert [m.out_features for m in small.net if isinstance(m, torch.nn.Linear)] == [32, 3]
    stacked = {k: torch.stack([p.detach(), p.detach() + 0.01]) for k, p in small.named_parameters()}
    xs = torch.rand(2, 4, 1, 28, 28)
    per_task = torch.stack([torch.func.functional_call(small, {k: v[t] for k, v in stacked.items()}, (xs[t],))
                            for t in range(2)])
    torch.testing.assert_close(small.forward_tasks(stacked, xs), per_task)


# -- RandomClassRotation -------------------------------------------------------------------------------
class Asymmetric(Dataset):
    """8 classes x 4 items of asymmetric 1x6x6 images (no rotation maps one onto another)."""

    def __init__(self):
        self.x = torch.arange(32 * 36, dtype=torch.float32).view(32, 1, 6, 6)
        self.targets = [i // 4 for i in range(32)]

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


DEGREES = [0.0, 90.0, 180.0, 270.0]


def rotation_pipeline(ds, ways=3, k=2):
    return [T.NWays(ds, ways), T.KShots(ds, k), T.LoadData(ds), T.RemapLabels(ds), T.ConsecutiveLabels(ds),
            RandomClassRotation(ds, DEGREES)]


def quarter_turns(ds, description, data):
    """The quarter turns that map each item's stored image onto its task data."""
    turns = []
    for dd, x in zip(description, data):
        found = [k for k in range(4) if torch.equal(torch.rot90(ds.dataset.x[dd.index], k, (-2, -1)), x)]
        assert len(found) == 1
        turns.append(found[0])
    return turns


def test_each_class_gets_one_rotation():
    ds = l2l.data.MetaDataset(Asymmetric())
    taskset = l2l.data.Taskset(ds, rotation_pipeline(ds), num_tasks=40)
    seen = set()
    for i in range(40):
        description = taskset.description(i)
        X, y = taskset[i]
        assert [ds.indices_to_labels[dd.index] for dd in description] == \
            sorted(ds.indices_to_labels[dd.index] for dd in description)  # labels untouched, grouped
        turns = quarter_turns(ds, description, X)
        by_class = {}
        for dd, turn in zip(description, turns):
            by_class.setdefault(ds.indices_to_labels[dd.index], set()).add(turn)
        assert all(len(t) == 1 for t in by_class.values())
        assert sorted(y.unique().tolist()) == [0, 1, 2]
        seen.update(t for turn_set in by_class.values() for t in turn_set)
    assert seen == {0, 1, 2, 3}


def test_rotations_are_seeded_per_task_and_leave_global_random_alone():
    ds = l2l.data.MetaDataset(Asymmetric())
    random.seed(123)
    state = random.getstate()
    a = l2l.data.Taskset(ds, rotation_pipeline(ds), num_tasks=10, seed=5)
    b = l2l.data.Taskset(ds, rotation_pipeline(ds), num_tasks=10, seed=5)
    for i in range(10):
        assert torch.equal(a[i][0], b[i][0])
    assert random.getstate() == state
    other = l2l.data.Taskset(ds, rotation_pipeline(ds), num_tasks=10, seed=6)
    assert any(not torch.equal(a[i][0], other[i][0]) for i in range(10))
    restored = pickle.loads(pickle.dumps(a))
    assert torch.equal(restored[3][0], a[3][0])


def test_rotation_draws_from_the_given_rng():
    ds = l2l.data.MetaDataset(Asymmetric())
    transform = RandomClassRotation(ds, DEGREES)
    description = T.LoadData(ds)(T.NWays(ds, 4)(None, random.Random(0)))
    first = transform.rotations(description, random.Random(1))
    assert first == transform.rotations(description, random.Random(1))
    assert list(first) == list(dict.fromkeys(ds.indices_to_labels[dd.index] for dd in description))
    assert set(first.values()) <= set(DEGREES)
    rotated = transform(description, random.Random(1))
    assert all(dd.transforms[-1] == RotateItem(first[ds.indices_to_labels[dd.index]]) for dd in rotated)
    with pytest.raises(ValueError):
        RandomClassRotation(ds, [])


def test_rotate_directions():
    x = torch.arange(2 * 25, dtype=torch.float32).view(2, 5, 5)
    for degrees in (90.0, 180.0, 270.0, -90.0, 450.0):
        assert torch.equal(rotate(x, degrees), TF.rotate(x, degrees))  # counter-clockwise, as torchvision
    image = Image.fromarray(np.arange(25, dtype=np.uint8).reshape(5, 5) * 10)
    assert np.array_equal(np.asarray(rotate(image, 90.0)),
                          torch.rot90(torch.from_numpy(np.array(image)), 1, (0, 1)).numpy())
    assert torch.equal(rotate(x, 30.0), TF.rotate(x, 30.0))
    with pytest.raises(TypeError, match="after LoadData"):
        RotateItem(90.0)(3)


def test_bridge_rejects_rotations_by_name():
    ds = l2l.data.MetaDataset(Asymmetric())
    family = l2l.bridge.TasksetFamily(l2l.data.Taskset(ds, rotation_pipeline(ds)))
    with pytest.raises(ValueError, match="RandomClassRotation"):
        family.spec(0, "train", 0, 0)
    plain = l2l.bridge.TasksetFamily(l2l.data.Taskset(ds, rotation_pipeline(ds)[:-1]))
    assert len(plain.spec(0, "train", 0, 0).rows) == 6
