"""Atomic writes and output checks.

A file is either its old content or its complete new content, never half-written. The temporary file
gets the permissions the umask allows (as any file the user creates), and its name records the host and
process that wrote it, so a temporary file left by a killed run is recognised and removed the next time
anything is written to that folder.

No clobbering: ``atomic_write(..., overwrite=False)`` puts the finished temporary file in place with a
hard link, which fails when the name exists, so a file another process wrote meanwhile is never
replaced (``FileExistsElsewhere``). On a file system without hard links it checks that the name is
free and renames, which leaves a window of a few microseconds.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
from collections.abc import Iterable
from pathlib import Path

TMP_SUFFIX = ".pcsr-tmp"


class OutputError(ValueError):
    """An output that cannot or must not be written; the message names the path and the reason."""


class FileExistsElsewhere(OutputError):
    """A no-clobber write found its file already there: written by another process since the checks."""


def _host() -> str:
    return "".join(c if c.isalnum() else "-" for c in socket.gethostname()) or "host"


def _tmp_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _create_new(path: Path) -> None:
    """Create ``path`` empty, failing if it exists, with mode 0o666 minus the umask (as the user's own files)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted writes in ``folder``: written on this host by a
    process that no longer runs. Files of live writers and of other hosts are left alone."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    host = _host()
    for tmp in folder.glob(f".*{TMP_SUFFIX}"):
        parts = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 3)
        if len(parts) != 4 or parts[1] != host or not parts[2].isdigit():
            continue
        if int(parts[2]) != os.getpid() and not _alive(int(parts[2])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _write_failure(path: Path, err: BaseException) -> OutputError:
    """A clear error for a failed write; a full disk is said in words (torch.save only says 'unexpected pos')."""
    text = str(err).strip()
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror
    else:
        reason = text.splitlines()[0] if text else type(err).__name__
    full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full:
        try:
            full = shutil.disk_usage(path.parent).free < 1 << 20
        except OSError:
            pass
    if full:
        reason = f"no space left on the device ({reason})"
    return OutputError(f"cannot write {path}: {reason}")


# errno values of a file system that has no hard links (FAT, some network and FUSE mounts)
NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EXDEV, errno.EMLINK}


def _appeared(path: Path) -> str:
    return (f"{path} appeared while this run was writing it (another process wrote it meanwhile); it is kept, "
            "not replaced")


def _place_new(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist (see the module's docstring)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsElsewhere(_appeared(path)) from None
    except OSError as err:
        if err.errno not in NO_LINKS:
            raise
        if os.path.lexists(path):
            raise FileExistsElsewhere(_appeared(path)) from None
        os.rename(tmp, path)
        return
    tmp.unlink()


def atomic_write(path: str | Path, write, overwrite: bool = True) -> Path:
    """Call ``write(tmp_path)`` then move it to ``path``: readers never see a half-written file.
    ``overwrite=False``: refuse (``FileExistsElsewhere``) rather than replace a file at ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _write_failure(path, err) from err
    remove_stale_temps(path.parent)
    tmp = _tmp_name(path)
    try:
        _create_new(tmp)
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    except OutputError:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise _write_failure(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(text: str, path: str | Path, overwrite: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)


def check_writable_dir(folder: str | Path) -> Path:
    """Prove, before any work starts, that files can be written in ``folder``: a probe file is created
    and removed in it, or in its nearest existing parent when it does not exist yet (created later)."""
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        where = "" if existing == folder else f"cannot create output folder {folder}: "
        raise OutputError(f"{where}{'output folder ' if existing == folder else ''}{existing} is a file, not a folder")
    try:
        probe = _tmp_name(existing / "write-check")
        _create_new(probe)
        probe.unlink()
    except OSError as err:
        raise OutputError(f"output folder {folder} is not writable: {err.strerror or err}") from err
    return folder


def check_outputs(outputs: Iterable[str | Path], inputs: Iterable[str | Path] = (), overwrite: bool = True,
                  folders: Iterable[str | Path] = ()) -> None:
    """Before any work, the one rule every command's outputs follow: no output is an input or another
    output, none lies inside a folder the command reads (``folders``, and every input that is a folder:
    an image folder, a model folder, a training run), each output's folder is writable, and (unless
    ``overwrite``) none exists yet."""
    outputs = [Path(p) for p in outputs]
    inputs = [Path(p) for p in inputs]
    taken = {_key(p): p for p in inputs}
    read = {_key(f): Path(f) for f in [*folders, *(p for p in inputs if p.is_dir())]}
    seen: dict[str, Path] = {}
    for out in outputs:
        key = _key(out)
        if key in taken and not taken[key].is_dir():
            raise OutputError(f"output {out} would overwrite the input {taken[key]}; choose another output folder")
        inside = next((folder for folder_key, folder in read.items() if is_within(key, folder_key)), None)
        if inside is not None:
            raise OutputError(f"output {out} is inside {inside}, a folder this command reads (its files are inputs); "
                              "choose an output outside it")
        if key in seen:
            raise OutputError(f"two results would be written to {out}")
        seen[key] = out
        if out.is_dir():
            raise OutputError(f"output {out} is a folder")
    existing = [p for p in outputs if p.exists()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise OutputError(f"{len(existing)} output file(s) already exist ({names}); pass --overwrite to replace them")
    for folder in dict.fromkeys(p.parent for p in outputs):
        check_writable_dir(folder)


def is_within(key: str, folder_key: str) -> bool:
    """Whether the resolved path ``key`` is ``folder_key`` or lies anywhere below it."""
    return key == folder_key or key.startswith(folder_key.rstrip(os.sep) + os.sep)


def check_not_within(target: str | Path, folders: Iterable[str | Path], what: str) -> None:
    """A folder a command writes into (``what``: e.g. "the run folder") must not lie inside one it reads."""
    key = _key(target)
    for folder in folders:
        if is_within(key, _key(folder)):
            raise OutputError(f"{what} {target} is inside {folder}, a folder this command reads (its files are "
                              "inputs); choose one outside it")


def _key(path: str | Path) -> str:
    """One key per file on disk: resolved path (symlinks followed), case kept."""
    return str(Path(path).expanduser().resolve())


def output_stems(inputs: Iterable[str | Path]) -> dict[Path, str]:
    """One output stem per input: its stem, or stem + '_' + extension when two inputs share a stem
    (``b.jpg`` and ``b.png`` become ``b_jpg`` and ``b_png``), so no result is written over another."""
    inputs = [Path(p) for p in inputs]
    counts: dict[str, int] = {}
    for p in inputs:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'noext'}" for p in inputs}
