"""Stand-in ``google.colab.drive``: "mounting" links the mount point to a local folder.

Colab's ``drive.mount("/content/drive")`` makes the user's Drive appear at ``/content/drive/MyDrive``. Here the
mount point becomes a symbolic link to the folder named by ``$COLAB_STANDIN_DRIVE``, whose ``MyDrive/`` plays
the Drive; tests read what the notebooks wrote there. A mount point that exists and is not such a link is never
touched.
"""

import os
from pathlib import Path

DRIVE_VARIABLE = "COLAB_STANDIN_DRIVE"
_mounted: list[Path] = []


def mount(
    mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False
) -> None:
    """Link ``mountpoint`` to ``$COLAB_STANDIN_DRIVE`` (Colab's signature; only ``mountpoint`` matters here)."""
    folder = os.environ.get(DRIVE_VARIABLE)
    if not folder:
        raise ValueError(
            f"the google.colab stand-in needs ${DRIVE_VARIABLE}: the local folder that plays Drive"
        )
    target = Path(folder).resolve()
    (target / "MyDrive").mkdir(parents=True, exist_ok=True)
    link = Path(mountpoint)
    if link.is_symlink() and link.resolve() == target:
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ValueError(f"Mountpoint must not already contain files: {mountpoint}")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
    _mounted.append(link)


def flush_and_unmount(timeout_ms: int = 86400000) -> None:
    """Remove the links this process made."""
    while _mounted:
        link = _mounted.pop()
        if link.is_symlink():
            link.unlink()
