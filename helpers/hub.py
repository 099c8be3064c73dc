"""The Hugging Face Hub and the files read from it: every contact with huggingface_hub goes through here.

A file is read from the local Hugging Face cache when it is there (``HF_HOME``, ``HF_HUB_OFFLINE=1`` are
honoured) and downloaded otherwise; when the Hub cannot be reached, ``HubUnavailableError`` comes within
seconds and says how to pre-download the file. What is read is checked (``DamagedFileError`` names the file,
what is wrong and the repair): a cached blob against its name the first time a process reads it, JSON that
does not parse, weights that are not a state dict. Nothing downloaded is unpickled as code (``torch.load``
with ``weights_only=True``).

helpers.loading builds models on this layer; ``download_file_from_hf`` (also ``utils.download_file_from_hf``,
TransformerLens' place for it) fetches one file by hand. This module imports no other helpers module.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

PROBE_TIMEOUT = 3.0  # seconds to wait for the Hub before declaring it unreachable

class HubUnavailableError(OSError):
    """The files of a model are not in the local cache and the Hugging Face Hub cannot be reached."""


class DamagedFileError(OSError):
    """A file read to build a model does not parse, or does not match its name, its config or the model."""


class RepositoryNotFoundError(FileNotFoundError):
    """The Hub answers that it has no such repository (or that it is private and this machine is not logged in)."""

    def __init__(self, repo: str):
        super().__init__(f"The Hugging Face Hub has no repository {repo}, or it is private (if it is yours, log in "
                         "with `hf auth login`).")
        self.repo = repo


# ================================================================================================
# The Hub layer: the cache first, the Hub only if it answers
# ================================================================================================


class _NotAvailable(Exception):
    """Internal: a Hub file is neither cached nor downloadable (turned into HubUnavailableError)."""

    def __init__(self, repo: str, filename: str | None, offline_mode: bool, revision: str | None = None):
        super().__init__(repo, filename)
        self.repo, self.filename, self.offline_mode, self.revision = repo, filename, offline_mode, revision


def _offline_mode() -> bool:
    from huggingface_hub import constants  # slow to import: only when the Hub is used

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {
        "1", "ON", "YES", "TRUE"}


_probe: dict[str, tuple[float, bool]] = {}


def hub_reachable(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the Hub answers one request within ``timeout`` seconds (remembered for a minute)."""
    from huggingface_hub import constants, get_session  # slow to import: only when the Hub is used

    endpoint = constants.ENDPOINT
    seen = _probe.get(endpoint)
    if seen and time.monotonic() - seen[0] < 60:
        return seen[1]
    try:
        get_session().head(endpoint, timeout=timeout)
        ok = True
    except Exception:
        ok = False
    _probe[endpoint] = (time.monotonic(), ok)
    return ok


def _online() -> bool:
    return not _offline_mode() and hub_reachable()


def _hub_file(repo: str, filename: str, subfolder: str | None = None, cache_dir=None,
              optional: bool = False, revision: str | None = None) -> str | None:
    """Local path of a file of a Hub repository: the cached copy, else a fresh download.

    Raises _NotAvailable when it is not cached and the Hub is off limits; FileNotFoundError (or
    returns None if ``optional``) when the repository has no such file; RepositoryNotFoundError when the Hub has
    no such repository; PermissionError for a gated repository whose licence this login has not accepted.
    """
    import huggingface_hub  # slow to import: only when the Hub is used
    from huggingface_hub import errors
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    kwargs = dict(subfolder=subfolder, cache_dir=cache_dir, **({"revision": revision} if revision else {}))
    for local_only in (True, False):  # the cache first; the Hub only if it answers
        if not local_only and not _online():
            raise _NotAvailable(repo, filename, _offline_mode(), revision)
        try:
            path = huggingface_hub.hf_hub_download(repo, filename, local_files_only=local_only, **kwargs)
            _check_blob(path, repo, filename if subfolder is None else f"{subfolder}/{filename}")
            return path
        except LocalEntryNotFoundError:
            if not local_only:  # the connection failed after the probe
                raise _NotAvailable(repo, filename, offline_mode=False, revision=revision) from None
        except EntryNotFoundError:  # the repository (or the cache's record of it) has no such file
            if optional:
                return None
            raise FileNotFoundError(f"The Hub repository {repo} has no file {filename}.") from None
        except errors.GatedRepoError:
            raise PermissionError(f"{repo} is a gated repository: accept its licence on its Hub page "
                                  f"(huggingface.co/{repo}) with your account, log in here with `hf auth login`, "
                                  "then load it again.") from None
        except errors.RepositoryNotFoundError:
            raise RepositoryNotFoundError(repo) from None


def _cached_file(repo: str, filename: str, revision: str | None = None) -> str | None:
    """Local path of a file of a Hub repository if it is in the cache (checked against its blob's name), else None;
    never the network."""
    import huggingface_hub  # slow to import: only when the Hub is used
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        path = huggingface_hub.hf_hub_download(repo, filename, local_files_only=True,
                                               **({"revision": revision} if revision else {}))
    except (LocalEntryNotFoundError, EntryNotFoundError):
        return None
    _check_blob(path, repo, filename)
    return path


def _repo_files(repo: str) -> tuple[list[str], bool]:
    """The files of a Hub repository, and whether the list is complete.

    Online, the Hub's list. Offline, the listing a multi-file ``hf download`` records in the cache when
    there is one (complete, even if only some files were downloaded), else the files in the cached snapshot.
    """
    import huggingface_hub  # slow to import: only when the Hub is used

    if _online():
        return huggingface_hub.list_repo_files(repo), True
    cached, listing = _cached_repo_files(repo)
    if not cached:
        raise _NotAvailable(repo, None, _offline_mode())
    return (listing, True) if listing else (cached, False)


def _cached_repo_files(repo: str) -> tuple[list[str], list[str] | None]:
    """The files of ``repo`` present in the local cache (snapshot of ``refs/main``), and the repository's
    full listing if the cache recorded one (``trees/<commit>.json``, recent huggingface_hub; else None).

    Read directly, not through ``snapshot_download(local_files_only=True)``: that raises when the recorded
    listing names files that were not downloaded, which is what a partial ``hf download`` leaves.
    """
    import huggingface_hub  # slow to import: only when the Hub is used
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    ref = storage / "refs" / constants.DEFAULT_REVISION
    if not ref.is_file():
        return [], None
    snapshot = storage / "snapshots" / ref.read_text().strip()
    cached = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    cached_tree = getattr(huggingface_hub, "get_cached_repo_tree", None)  # absent from older versions
    if cached_tree is None:
        return cached, None
    try:
        return cached, sorted(f.path for f in cached_tree(repo))
    except huggingface_hub.errors.CachedRepoTreeNotFoundError:
        return cached, None


# ================================================================================================
# Reading files with checks: every damaged file gives an error naming it, what is wrong and the repair
# ================================================================================================

_verified: set[tuple[str, int, int]] = set()  # blobs checked in this process: (path, size, mtime)


def _repair(repo: str, filename: str) -> str:
    return f"download it again with `hf download {repo} {filename} --force-download`"


def _check_blob(path: str, repo: str, filename: str) -> None:
    """The first time this process reads a file of the Hugging Face cache, check it against its blob's name:
    the sha256 of the content for LFS files (the weights), git's blob sha1 for the others."""
    blob = Path(path).resolve()
    stat = blob.stat()
    key = (str(blob), stat.st_size, stat.st_mtime_ns)
    if blob.parent.name != "blobs" or key in _verified:
        return
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        digest = hashlib.sha256()
    elif re.fullmatch(r"[0-9a-f]{40}", blob.name):
        digest = hashlib.sha1(b"blob %d\0" % stat.st_size)
    else:
        return
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        raise DamagedFileError(f"The cached file {repo}/{filename} ({blob}) is damaged: the Hugging Face cache "
                               f"names it by its hash, {blob.name}, but its content hashes to {digest.hexdigest()} "
                               f"(a download cut short, a disk error, an edited file). "
                               f"{_repair(repo, filename).capitalize()}.")
    _verified.add(key)


def _read_json(path, repair: str) -> dict:
    """A JSON file's content, or an error naming the file, where it does not parse, and the repair."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DamagedFileError(f"{path} is not valid JSON ({e}): the file is damaged; {repair}.") from None


#: The dtypes of a safetensors header, as torch dtypes.
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
                       "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U64": torch.uint64,
                       "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool}


class SafetensorsReader(Mapping):
    """The tensors of a ``.safetensors`` file, each read from disk when it is asked for and not kept.

    Plain reads rather than a memory map: the pages read stay in the system's file cache, not in this process's
    memory, so reading a model tensor by tensor costs one tensor of memory at a time.
    """

    def __init__(self, path, repair: str):
        self.path, self.repair = str(path), repair
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        size = os.path.getsize(self.path)
        with open(self.path, "rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else -1
            try:
                if not 0 < length <= size - 8:
                    raise ValueError("the header length is wrong")
                header = json.loads(f.read(length))
                for name, info in header.items():
                    if name == "__metadata__":
                        continue
                    start, end = info["data_offsets"]
                    dtype, shape = _SAFETENSORS_DTYPES[info["dtype"]], tuple(info["shape"])
                    if not 0 <= start <= end <= size - 8 - length:
                        raise ValueError(f"tensor {name} lies outside the file")
                    self.entries[name] = (dtype, shape, 8 + length + start, end - start)
            except (ValueError, KeyError, TypeError) as e:
                raise DamagedFileError(f"Cannot read the weights file {self.path} ({e}): it is damaged or incomplete "
                                       f"(a download cut short?); {repair}.") from None

    def __getitem__(self, name: str) -> torch.Tensor:
        dtype, shape, offset, nbytes = self.entries[name]
        expected = dtype.itemsize * int(torch.Size(shape).numel())
        if nbytes != expected:
            raise DamagedFileError(f"In the weights file {self.path}, tensor {name} holds {nbytes} bytes for shape "
                                   f"{shape} ({dtype}), which needs {expected}: the file is damaged; {self.repair}.")
        if nbytes == 0:
            return torch.empty(shape, dtype=dtype)
        buffer = bytearray(nbytes)
        with open(self.path, "rb") as f:
            f.seek(offset)
            f.readinto(buffer)
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape)

    def pop(self, name: str) -> torch.Tensor:
        """Read tensor ``name`` and forget it (as dict.pop does, but nothing was held)."""
        tensor = self[name]
        del self.entries[name]
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]


def _open_tensors(path: str, repair: str) -> Mapping[str, torch.Tensor]:
    """The tensors of a weights file: a ``SafetensorsReader`` (each tensor read from disk when it is taken) for a
    .safetensors file, else ``_load_tensors``' whole state dict."""
    return SafetensorsReader(path, repair) if path.endswith(".safetensors") else _load_tensors(path, repair)


def _load_tensors(path: str, repair: str) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or from a pickle with weights_only=True (never code); an error
    naming the file and the repair if it cannot be read."""
    try:
        if path.endswith(".safetensors"):
            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise DamagedFileError(f"{path} holds Python objects other than tensors, which are never unpickled "
                               f"here (torch.load with weights_only=True): {first}") from None
    except Exception as e:  # SafetensorError, or torch's RuntimeError / EOFError for a truncated .pth
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DamagedFileError(f"Cannot read the weights file {path} ({why}): it is damaged or incomplete (a "
                               f"download cut short?); {repair}.") from None
    if not (isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())):
        raise DamagedFileError(f"{path} does not hold a state dict (a dict of tensors): {repair}.")
    return sd



def _unavailable_message(what: str, e: _NotAvailable, commands: list[str] | None = None) -> str:
    """Why ``what`` cannot be loaded and the ``commands`` that put it in the cache (by default
    ``hf download <repo> <file>``)."""
    from huggingface_hub import constants  # slow to import: only when a message needs it

    missing = f"{e.repo}/{e.filename} is" if e.filename else f"the files of {e.repo} are"
    why = ("HF_HUB_OFFLINE=1 is set" if e.offline_mode
           else f"the Hugging Face Hub ({constants.ENDPOINT}) is unreachable from this machine")
    lines = [f"Cannot load {what}: {why} and {missing} not in the local cache ({constants.HF_HUB_CACHE}).",
             "To use it offline, download it on a machine with internet access:"]
    lines += [f"    {c}" for c in (commands or [f"hf download {e.repo} {e.filename}"])]
    lines.append("(`huggingface-cli download` takes the same arguments), then copy the cache directory here "
                 "or point HF_HOME at it.")
    return "\n".join(lines)


# ================================================================================================
# One file by hand
# ================================================================================================


def download_file_from_hf(repo_name: str, file_name: str, subfolder: str = ".", cache_dir=None,
                          force_is_torch: bool = False):
    """Fetch one file of a Hub repository (cached copy first) and load it.

    Returns a dict for JSON, a state dict for .pth / .pt (``torch.load(weights_only=True)``) and
    .safetensors, and the local path otherwise.
    """
    try:
        path = _hub_file(repo_name, file_name, subfolder=None if subfolder in (".", "") else subfolder,
                         cache_dir=cache_dir)
    except _NotAvailable as e:
        raise HubUnavailableError(_unavailable_message(f"{repo_name}/{file_name}", e)) from None
    if file_name.endswith((".pth", ".pt", ".safetensors")) or force_is_torch:
        return _load_tensors(path, _repair(repo_name, file_name))
    if file_name.endswith(".json"):
        return _read_json(path, _repair(repo_name, file_name))
    return path

