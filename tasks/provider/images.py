"""Images as a provider receives them: bytes with a sniffed media type, a size and a sha256."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

from PIL import Image

# Formats both OpenAI and Anthropic accept as-is; anything else is re-encoded as PNG.
_SENDABLE = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}

ImageInput = bytes | Image.Image


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the wire; its identity is the sha256 of the bytes sent."""

    data: bytes
    media_type: str
    width: int
    height: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.base64()}"

    def fitted(self, max_side: int) -> PreparedImage:
        """A copy scaled down (never up) so both sides are at most `max_side` px."""
        if max(self.width, self.height) <= max_side:
            return self
        with Image.open(io.BytesIO(self.data)) as img:
            img.load()
            small = img.copy()
        small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return _encode(small)


def _encode(img: Image.Image) -> PreparedImage:
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", optimize=True)
    return PreparedImage(buffer.getvalue(), "image/png", img.width, img.height)


def prepare_image(image: ImageInput) -> PreparedImage:
    """Sniff the bytes (never trust a name); keep sendable formats, re-encode the rest as PNG."""
    if isinstance(image, Image.Image):
        return _encode(image)
    try:
        with Image.open(io.BytesIO(image)) as img:
            fmt = img.format or ""
            width, height = img.size
            if fmt in _SENDABLE:
                return PreparedImage(bytes(image), _SENDABLE[fmt], width, height)
            img.load()
            return _encode(img)
    except (OSError, SyntaxError) as exc:  # PIL raises these for bytes that are not an image
        raise ValueError(f"not a readable image ({len(image)} bytes): {exc}") from exc


def prepare_images(images: list[ImageInput] | tuple[ImageInput, ...]) -> tuple[PreparedImage, ...]:
    return tuple(prepare_image(image) for image in images)
