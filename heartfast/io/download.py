"""Download the public databases from PhysioNet with wfdb's own downloader (needs internet access).

wfdb always fetches a database's latest published version; the versions named here are the ones the
readers were written and tested against. Besides the WFDB records, the metadata tables the readers
need (PTB-XL's csv files, LUDB's diagnoses table) are fetched too.
"""
from __future__ import annotations

import re
from pathlib import Path

PHYSIONET_DATABASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (PhysioNet directory, tested version, extra files)
    "ptb-xl": ("ptb-xl", "1.0.3", ("ptbxl_database.csv", "scp_statements.csv", "LICENSE.txt")),
    "ludb": ("ludb", "1.0.1", ("ludb.csv", "LICENSE.txt")),
    "qtdb": ("qtdb", "1.0.0", ()),
}


class DownloadError(RuntimeError):
    """A download that could not be done; the message is one line saying why."""


def download(name: str, to: str | Path) -> Path:
    """Download database `name` into folder `to` (resumes partial files); returns the folder."""
    if name not in PHYSIONET_DATABASES:
        raise DownloadError(f"unknown database {name!r}; choose one of {', '.join(PHYSIONET_DATABASES)}")
    import wfdb
    from wfdb.io import download as wfdb_download

    db_dir, version, extra_files = PHYSIONET_DATABASES[name]
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    try:
        wfdb.dl_database(db_dir, str(to))
        if extra_files:
            wfdb.dl_files(db_dir, str(to), list(extra_files))
    except Exception as exc:  # requests/urllib/wfdb raise many types for one cause: no usable network
        text = str(exc).strip()
        errno = re.search(r"\[Errno -?\d+\][^'\")]*", text)   # the root cause inside urllib3's long message
        reason = errno[0].strip() if errno else (text.splitlines() or [type(exc).__name__])[0]
        raise DownloadError(f"cannot download {name} (PhysioNet {db_dir}, tested version {version}) from "
                            f"{wfdb_download.PN_CONTENT_URL}: {reason[:200]} (no internet access?)") from None
    return to
