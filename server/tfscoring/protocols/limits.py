"""What one request may hold, for every codec: one value, made from the settings, and the one check of its rows."""

from __future__ import annotations

from dataclasses import dataclass

from tfscoring.config import Settings
from tfscoring.errors import PayloadTooLarge

# An image's width x height, at most (413 above): 16 megapixels, a 4096 x 4096 square.
MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Limits:
    # The settings' defaults (a test's or a benchmark's Limits() is the server's as make serve runs it).
    max_rows: int = Settings.model_fields["max_request_rows"].default  # MAX_REQUEST_ROWS
    image_scale: str = Settings.model_fields["image_scale"].default  # IMAGE_SCALE: how pixels reach a float input
    max_pixels: int = MAX_PIXELS

    def check_rows(self, rows: int, where: str) -> None:
        """A 413 for `rows` (a count) over MAX_REQUEST_ROWS; `where` names what holds them, e.g. '"data"'."""
        if rows > self.max_rows:
            raise PayloadTooLarge(
                f"{where} has {rows} rows; the limit is {self.max_rows} rows per request (MAX_REQUEST_ROWS)"
            )
