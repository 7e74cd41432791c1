"""Atomic, checksummed checkpoints: one format for every algorithm and entry point.

Layout: `checkpoints/step_00001000/{state.pt, manifest.json}`. `state.pt` holds only tensors and
plain values (meta-parameters, outer-optimizer state, step, version, RNG state) and is loaded with
`torch.load(weights_only=True)`, never arbitrary pickles. `manifest.json` records the sha256 of
`state.pt`, the step, the run id and the config, and a checksum of itself, so a single flipped byte
anywhere is detected. A checkpoint is written into a temporary directory, fsynced, then renamed into
place; the previous ones stay until the new one is complete, and the newest `keep` are kept.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from meta_dist.errors import UserError
from meta_dist.fileio import fsync_dir, sha256_file

STATE, MANIFEST = "state.pt", "manifest.json"


@dataclass
class Checkpoint:
    step: int
    params: dict[str, torch.Tensor]
    optimizer: dict
    version: int
    run_id: str
    config: dict
    path: Path


def _manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, step: int, server_state: dict, run_id: str, config: dict, keep: int) -> Path:
    """Write the checkpoint of `step` atomically, then prune all but the newest `keep`."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp-step_{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {"params": server_state["params"], "optimizer": server_state["optimizer"],
             "version": server_state["version"], "step": step, "torch_rng": torch.get_rng_state()}
    with open(tmp / STATE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    manifest = {"format": 1, "step": step, "run_id": run_id, "config": config,
                "files": {STATE: sha256_file(tmp / STATE)},
                "param_shapes": {k: list(v.shape) for k, v in sorted(server_state["params"].items())}}
    manifest["checksum"] = _manifest_checksum(manifest)
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    if final.exists():  # re-saving the same step (e.g. after a resume): replace only once complete
        old = root / f".old-step_{step:08d}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)
    fsync_dir(root)
    for stale in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(stale, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))


def verify(path: Path) -> dict:
    """The manifest of a checkpoint directory, or ValueError saying why it cannot be trusted."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"manifest unreadable ({type(e).__name__})") from None
    if not isinstance(manifest, dict) or manifest.get("checksum") != _manifest_checksum(manifest):
        raise ValueError("manifest checksum mismatch")
    for name, digest in manifest["files"].items():
        if not (path / name).is_file():
            raise ValueError(f"{name} is missing")
        if sha256_file(path / name) != digest:
            raise ValueError(f"{name} checksum mismatch")
    return manifest


def load(path: Path) -> Checkpoint:
    manifest = verify(path)
    state = torch.load(path / STATE, map_location="cpu", weights_only=True)
    return Checkpoint(int(state["step"]), state["params"], state["optimizer"], int(state["version"]),
                      manifest["run_id"], manifest["config"], path)


def load_latest(run_dir: Path) -> Checkpoint | None:
    """The newest checkpoint that passes its checksums; corrupt ones are reported and skipped."""
    candidates = list_checkpoints(run_dir)
    for path in reversed(candidates):
        try:
            return load(path)
        except ValueError as e:
            print(f"warning: checkpoint {path.name} is corrupt ({e}); falling back to the previous one",
                  file=sys.stderr)
    if candidates:
        raise UserError(f"all {len(candidates)} checkpoints in {checkpoint_dir(run_dir)} are corrupt; "
                        f"start a new run with a fresh --run-dir")
    return None


def check_compatible(ckpt: Checkpoint, params: dict[str, torch.Tensor]) -> None:
    """Refuse a checkpoint whose parameters do not fit the configured model."""
    expected = {k: tuple(v.shape) for k, v in params.items()}
    found = {k: tuple(v.shape) for k, v in ckpt.params.items()}
    if expected != found:
        diff = sorted(set(expected.items()) ^ set(found.items()))[:1]
        raise UserError(f"checkpoint {ckpt.path} holds parameters of another model (first difference: "
                        f"{diff[0][0]} {diff[0][1]}); check --config or use a fresh --run-dir")
