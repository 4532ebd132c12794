"""PNG, JPEG and WebP bodies taken apart by job, for the image codec (protocols/images.py): which inputs take an
image (layout.py), the header read and checked before any pixel (header.py, containers.py), the decode's memory
from the header (cost.py), the pixels (pixels.py) and EXIF orientation (exif.py)."""
