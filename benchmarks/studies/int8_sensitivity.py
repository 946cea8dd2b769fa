"""Which convs can be int8? Each conv's input, then its output, rounded to 8 bits on its own.

    python -m stylecast.benchmarks.studies.int8_sensitivity --model models/wave.safetensors [--size 256]

A diagnostic, not the quantizer: each tensor gets symmetric per-tensor int8 with its own max as the
range (the export calibrates with ONNX Runtime instead), and everything else stays fp32, so the
output PSNR against fp32 says how much 8-bit rounding at that one place costs. This is the
measurement behind keeping the leading convs in fp32 (export/to_int8.py). Prints a table and
writes artifacts/bench/int8_sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from stylecast.export.parity import parity_images
from stylecast.runtime.images import atomic_write, fit
from stylecast.runtime.metrics import psnr
from stylecast.train.checkpoint import load_model


def rounded(x: torch.Tensor) -> torch.Tensor:
    scale = x.abs().amax().clamp_min(1e-12) / 127.0
    return torch.round(x / scale).clamp(-127, 127) * scale


def worst_psnr(net: torch.nn.Module, batch: torch.Tensor, reference: torch.Tensor) -> float:
    with torch.no_grad():
        out = net(batch)
    return min(psnr(r.numpy(), o.numpy()) for r, o in zip(reference, out, strict=True))


def sensitivity(model: Path, photos: Path, size: int) -> list[dict]:
    net = load_model(model).model.eval()
    images = np.stack([fit(p, size, size) for p in parity_images(photos)])
    batch = torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        reference = net(batch)
    rows = []
    for index, conv in enumerate(m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        hook = conv.register_forward_pre_hook(lambda _m, args: (rounded(args[0]),))
        on_input = worst_psnr(net, batch, reference)
        hook.remove()
        hook = conv.register_forward_hook(lambda _m, _args, out: rounded(out))
        on_output = worst_psnr(net, batch, reference)
        hook.remove()
        rows.append({"conv": index, "shape": list(conv.weight.shape), "input_psnr_db": round(on_input, 1),
                     "output_psnr_db": round(on_output, 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/wave.safetensors"))
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/int8_sensitivity.json"))
    args = parser.parse_args()
    rows = sensitivity(args.model, args.photos, args.size)
    print("conv  weight shape        input rounded  output rounded   (worst output PSNR vs fp32, dB)")
    for row in rows:
        print(f"{row['conv']:>4}  {str(row['shape']):<18}  {row['input_psnr_db']:>13}  {row['output_psnr_db']:>14}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": str(args.model), "size": args.size, "photos": str(args.photos), "convs": rows}
    atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
