"""Reading and checking the inputs of a lens fit (the command line's boundary).

The reading lives in :func:`vaelens.data.inputs.load_image_data`; here its
:class:`~vaelens.data.inputs.InputError` (a problem the user can fix: a missing file, a bad HDU,
a PSF at another pixel scale, no noise model, an empty mask) becomes a
:class:`vaelens.cli.CLIError`: one line, exit status 2.
"""

from __future__ import annotations

import functools

from vaelens.commands._common import cli_error
from vaelens.data.inputs import PIXEL_SCALE_RTOL, InputError
from vaelens.data.inputs import load_image_data as _load_image_data

__all__ = ["PIXEL_SCALE_RTOL", "load_image_data"]


@functools.wraps(_load_image_data)
def load_image_data(*args, **kwargs):
    try:
        return _load_image_data(*args, **kwargs)
    except InputError as err:
        raise cli_error(str(err)) from None
