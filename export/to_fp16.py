"""fp32 ONNX -> mixed fp16 ONNX with fp32 I/O, the precision written into the graph (TensorRT 11 style).

InstanceNormalization stays fp32: its variance is a sum of squares that overflows fp16 (max 65504)
as soon as activations reach a few hundred, and its reductions lose the small per-channel offsets.
The other ops (input scaling, convs, ReLU, Pad, Resize, Add, the output Clip) run in fp16.
"""

from __future__ import annotations

import onnx
from onnxconverter_common import float16

# Measured on the wave model (see the report): without these, parity falls below the fp16 floor.
FP32_OPS = ["InstanceNormalization", "ReduceMean", "ReduceSumSquare", "ReduceL2"]


def convert_fp16(model: onnx.ModelProto, keep_fp32_ops: list[str] = FP32_OPS,
                 keep_fp32_nodes: list[str] | None = None) -> onnx.ModelProto:
    """Mixed precision: fp16 everywhere except ``keep_fp32_ops``/``keep_fp32_nodes``; inputs and outputs stay fp32."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    del model.graph.value_info[:]  # the exporter's fp32 annotations would contradict the converted types
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    return float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block,
                                            node_block_list=keep_fp32_nodes or [], disable_shape_infer=False)
