"""Finding a saved model: a local folder, or a hub id in the Hugging Face cache (then the hub,
unless `HF_HUB_OFFLINE` is set), with one clear error when neither has it. Never
`trust_remote_code`."""

from __future__ import annotations

import os
from pathlib import Path


class TeacherNotFoundError(FileNotFoundError):
    """A teacher id or path that cannot be loaded here."""


def find_pretrained(name: str, what: str = "teacher", flag: str = "--teacher"):
    """(source, from_pretrained kwargs, config) of a local folder or hub id, without
    `trust_remote_code`: a folder as is; a hub id from the local cache first (fast), then from
    the hub unless `HF_HUB_OFFLINE` is set.

    Raises:
        TeacherNotFoundError: naming `what` and the `flag` to pass a downloaded folder with.
    """
    from transformers import AutoConfig

    local = Path(name).expanduser()
    if not local.exists() and "/" in name and local.parent.is_dir() and str(local.parent) not in (".", ""):
        raise TeacherNotFoundError(f"{what} path '{name}' does not exist (its folder '{local.parent}' does): "
                                   f"check the path given to {flag}")
    if local.is_file():
        raise TeacherNotFoundError(f"{what} '{name}' is a file: pass the folder that holds its "
                                   "config.json (a `save_pretrained` folder)")
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise TeacherNotFoundError(f"{what} folder '{name}' has no config.json, so it is not a saved "
                                       "`transformers` model: pass the folder written by `save_pretrained` "
                                       "(or by `hf download ID --local-dir DIR`)")
        src, attempts = str(local), [dict(local_files_only=True)]
    elif name.startswith((".", "/", "~")) or not _looks_like_hub_id(name):
        raise TeacherNotFoundError(f"{what} path '{name}' does not exist: check the path")
    else:
        src, attempts = name, [dict(local_files_only=True)]
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("0", "", "false", "no"):
            attempts.append({})
    last = None
    for kw in attempts:
        try:
            return src, kw, AutoConfig.from_pretrained(src, trust_remote_code=False, **kw)
        except (OSError, ValueError) as exc:
            last = exc
    hub = ("the hub could not be reached" if len(attempts) > 1
           else "the hub was not asked (HF_HUB_OFFLINE is set)")
    raise TeacherNotFoundError(
        f"cannot load {what} '{name}': it is not a local folder and not in the Hugging Face "
        f"cache, and {hub} ({str(last).splitlines()[0][:160]}). "
        f"On a connected machine run `hf download {name} --local-dir DIR` "
        f"and pass {flag} DIR") from last


def _looks_like_hub_id(name: str) -> bool:
    """'owner/name' or 'name' with the characters the hub allows."""
    import re

    return re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) is not None
