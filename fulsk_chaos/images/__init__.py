"""Container images of the stack: the registry's, or built offline from a debootstrap'd Debian."""
from .build import BASE_IMAGE, BuildResult, ImageBuildError, build_images, image_for

__all__ = ["BASE_IMAGE", "BuildResult", "ImageBuildError", "build_images", "image_for"]
