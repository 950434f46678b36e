"""The media store: generated images and videos kept for a retention and served at signed URLs.

`MediaStore` (put / read by range / delete / purge) over a `MediaBackend`: a local directory
(`LocalBackend`, the embedded default) or an S3-compatible store (`S3Backend`). A gateway process
uses it through `runapi.media.runtime.MediaRuntime` (signed URLs, the retention purge) and
`runapi.media.download.MediaDownloader` (copies of provider URLs), and endpoints turn provider
results into kept files with `runapi.media.results`; those three are imported from
their modules, as they depend on the task layer, which depends on the settings that import
`location` from here.
"""

from typing import TYPE_CHECKING

from .backend import MediaBackend
from .local import LocalBackend
from runapi.media_location import LocalLocation, S3Location, parse_media_url
from .ranges import ByteRange, RangeNotSatisfiable, parse_range
from .store import MediaStore, MediaTooLarge, StoredMedia

if TYPE_CHECKING:
    from .s3 import S3Backend

__all__ = ["ByteRange", "LocalBackend", "LocalLocation", "MediaBackend", "MediaStore", "MediaTooLarge",
           "RangeNotSatisfiable", "S3Backend", "S3Location", "StoredMedia", "parse_media_url", "parse_range"]


def __getattr__(name: str) -> object:
    """`S3Backend` on first use: obstore (4 MiB) stays out of a gateway that keeps its media locally."""
    if name == "S3Backend":
        from .s3 import S3Backend

        return S3Backend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
