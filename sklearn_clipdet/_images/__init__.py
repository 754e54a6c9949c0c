"""Image input for the featurizer: reading and decoding on the CPU (``_reading``),
tensor decoding and preprocessing (``_tensors``), streaming decode workers and
batches (``_decoding``) and asynchronous CUDA copies (``_cuda_copies``).

The reading functions are re-exported here, as other parts of the package
(the evaluation tools) use them.
"""

from ._reading import (
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_PIXELS,
    DecodeOptions,
    ImageDecodeError,
    ImageDecodeWarning,
    content_hash,
    decode_image,
    describe_input,
    is_missing,
    load_rgb,
    load_source,
    open_image,
    open_limited,
    read_file,
    sample_errors,
    to_rgb,
)

__all__ = [
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DecodeOptions",
    "ImageDecodeError",
    "ImageDecodeWarning",
    "content_hash",
    "decode_image",
    "describe_input",
    "is_missing",
    "load_rgb",
    "load_source",
    "open_image",
    "open_limited",
    "read_file",
    "sample_errors",
    "to_rgb",
]
