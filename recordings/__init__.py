"""Recording data format and storage.

A recording is an :class:`xarray.DataArray` named ``response`` with dims
``(presentation, neuroid, time_bin)`` holding firing rates in spikes/s, compatible with
Brain-Score's ``NeuroidAssembly`` coordinate names. It is stored in zarr (v3) through
xarray; long recordings stream to disk batch by batch and resume after a crash.
"""

from recordings.format import (
    NEUROID_COORDS,
    PRESENTATION_COORDS,
    TIME_BIN_COORDS,
    check_recording,
    json_attrs,
)
from recordings.real import load_responses
from recordings.store import open_recording, save
from recordings.stream import StreamWriter

open = open_recording

__all__ = [
    "NEUROID_COORDS",
    "PRESENTATION_COORDS",
    "TIME_BIN_COORDS",
    "StreamWriter",
    "check_recording",
    "json_attrs",
    "load_responses",
    "open",
    "open_recording",
    "save",
]
