"""Where the media store lives: the `[media] url` setting parsed into a value (no I/O).

- empty: a local directory beside the SQLite database (`runapi.db` → `runapi.db-media/`), or
  `./runapi-media` when the database is not a SQLite file;
- a path, or `file:///path`: that local directory;
- `s3://bucket[/prefix][?endpoint=URL&region=NAME&virtual_hosted=true]`: an S3-compatible store
  (AWS S3, MinIO, Ceph radosgw, R2, ...). Credentials are never part of the URL: `[media]
  access_key_env` / `secret_key_env` name the environment variables that hold them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec

__all__ = ["LocalLocation", "MediaLocation", "S3Location", "parse_media_url"]


class LocalLocation(msgspec.Struct, frozen=True):
    path: Path

    def display(self) -> str:
        return f"local directory {self.path}"


class S3Location(msgspec.Struct, frozen=True):
    bucket: str
    prefix: str = ""
    endpoint: str = ""  # empty: AWS
    region: str = "us-east-1"
    virtual_hosted: bool = False

    def display(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


MediaLocation = LocalLocation | S3Location
_S3_OPTIONS = frozenset({"endpoint", "region", "virtual_hosted"})


def parse_media_url(url: str, sqlite_file: str | None) -> MediaLocation:
    """The location `url` names; `sqlite_file` is the database file, if any, for the default.

    Raises `ValueError` with the reason for a URL it cannot use.
    """
    if not url:
        return LocalLocation(Path(sqlite_file + "-media") if sqlite_file else Path("runapi-media"))
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):
        if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
            raise ValueError(f"media url {url!r}: a file URL names a local path (file:///path)")
        return LocalLocation(Path(parts.path if parts.scheme == "file" else url))
    if parts.scheme != "s3":
        raise ValueError(f"media url {url!r}: expected a directory, file:///path or s3://bucket/prefix")
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("media url: s3://bucket/prefix, with no credentials in it (see [media] access_key_env)")
    options = {name: values[-1] for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - _S3_OPTIONS)
    if unknown:
        raise ValueError(f"media url: unknown options {unknown}, expected some of {sorted(_S3_OPTIONS)}")
    endpoint = options.get("endpoint", "")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ValueError("media url: endpoint must be an http:// or https:// URL")
    virtual = options.get("virtual_hosted", "false").lower()
    if virtual not in ("true", "false"):
        raise ValueError("media url: virtual_hosted must be true or false")
    return S3Location(bucket=parts.netloc, prefix=parts.path.strip("/"), endpoint=endpoint.rstrip("/"),
                      region=options.get("region") or "us-east-1", virtual_hosted=virtual == "true")
