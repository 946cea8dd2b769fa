"""The v2 protocol's work off the event loop: decoding infer requests and encoding their answers.

A 12 MiB JSON infer request is two million numbers: decoding it (``orjson.loads``, then ``np.array``) is one C
call of a few hundred milliseconds that holds the GIL, so a worker *thread* would still stall every other request,
health probes included. JSON bodies above ``OFFLOAD_BYTES`` are therefore decoded in a worker process; small ones,
and binary tensors (whose JSON header is small), in a thread. Answers are encoded in a thread a chunk at a time
(``protocol.infer_response``), which gives the GIL back between chunks.

The decoder process is spawned, so a program that builds the app itself needs the ``if __name__ == "__main__":``
guard of Python's multiprocessing (`stylecast serve` and uvicorn's command line have it).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import numpy as np

from stylecast.serve.errors import HttpError
from stylecast.serve.protocol import InferRequest, header_split, infer_response, parse_infer

OFFLOAD_BYTES = 1 << 20  # decoding this much JSON in a thread holds the GIL for ~10-30 ms: the most we allow


def _ignore_interrupt() -> None:
    """Ctrl-C reaches the whole process group; the server, not its decoder, decides when to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write(path: Path, data: bytes) -> None:
    with path.open("wb", buffering=0) as file:  # unbuffered: one write call, which lets go of the GIL
        file.write(data)


def _decode_in_folder(folder: str, split: int, max_batch: int, max_pixels: int, min_side: int,
                      styles: int) -> tuple[tuple[int, ...], InferRequest]:
    """In the decoder process: the request from ``folder/request``, its image left in ``folder/image`` as raw
    float32 and returned empty, with its shape. Tens of MiB pickled through the pool's pipe instead would be copied
    in one call on the server's side, holding its GIL; a file is written and read with the GIL released."""
    request = parse_infer(Path(folder, "request").read_bytes(), split, max_batch, max_pixels, min_side, styles)
    request.image.astype("<f4", copy=False).tofile(Path(folder, "image"))
    return request.image.shape, replace(request, image=np.empty(0, np.float32))


class InferCodec:
    """Decodes v2 infer requests and encodes their answers without holding up the event loop."""

    def __init__(self, max_batch: int, max_pixels: int, threads: Executor) -> None:
        self.max_batch = max_batch
        self.max_pixels = max_pixels
        self.threads = threads  # the server's pool for decoding and encoding, which bounds their memory
        self._decoder: ProcessPoolExecutor | None = None  # started by the first large JSON request

    async def parse(self, body: bytes, header_length: str | None, min_side: int, styles: int) -> InferRequest:
        """The request to a model of ``styles`` styles (see ``parse_infer``)."""
        split = header_split(len(body), header_length)
        loop = asyncio.get_running_loop()
        if split <= OFFLOAD_BYTES:
            return await loop.run_in_executor(self.threads, parse_infer, body, split, self.max_batch,
                                              self.max_pixels, min_side, styles)
        with tempfile.TemporaryDirectory(prefix="stylecast-v2-") as folder:
            await loop.run_in_executor(self.threads, _write, Path(folder, "request"), body)
            shape, request = await self._decode(folder, split, min_side, styles)
            image = await loop.run_in_executor(self.threads, np.fromfile, Path(folder, "image"), "<f4")
        return replace(request, image=image.reshape(shape))

    async def _decode(self, folder: str, split: int, min_side: int,
                      styles: int) -> tuple[tuple[int, ...], InferRequest]:
        if self._decoder is None:
            # spawn, not fork: the server has running threads (inference, the thread pool) a fork would copy mid-work
            self._decoder = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_ignore_interrupt)
        decoder = self._decoder
        try:
            return await asyncio.get_running_loop().run_in_executor(
                decoder, _decode_in_folder, folder, split, self.max_batch, self.max_pixels, min_side, styles)
        except BrokenProcessPool as exc:  # killed (out of memory?): the next large request starts a new one
            if self._decoder is decoder:
                self._decoder = None
            decoder.shutdown(wait=False)
            raise HttpError(500, "the JSON decoder process died (out of memory?); retry, or send the tensor as "
                                 "binary data") from exc

    async def answer(self, model: str, request: InferRequest,
                     result: np.ndarray) -> tuple[list[bytes], dict[str, str]]:
        return await asyncio.get_running_loop().run_in_executor(self.threads, infer_response, model, request, result)

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.shutdown(wait=True, cancel_futures=True)
            self._decoder = None


async def stream(parts: list[bytes]) -> AsyncIterator[bytes]:
    """A response body already in memory, part by part, without a thread hop per part."""
    for part in parts:
        yield part
