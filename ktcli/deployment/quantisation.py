"""Reduced-precision copies of an exported fp32 ONNX ensemble: int8 and fp16.

int8 is ONNX Runtime's *static* quantisation in the QDQ format: activation ranges are
calibrated on real images (MinMax over the calibration batches), activations are stored as
uint8 per tensor and weights as int8 per output channel, and ONNX Runtime's CPU provider
fuses each QuantizeLinear -> DequantizeLinear -> Conv pattern into an int8 convolution.
Per-channel weights because batch normalisation is folded into the convolutions at export,
which leaves channels whose weights differ in range by orders of magnitude (per tensor, the
small ones round to a few levels: on the demo ensemble, 84% top-1 agreement with fp32
against 95% per channel). *Dynamic* quantisation (``quantize_dynamic``) is not used: it
turns each convolution into a ConvInteger that quantises its input on every call, for which
ONNX Runtime has no fast CPU kernel (on the demo ensemble at batch 16: 10 images/s against
127 in fp32 and 322 static int8, with 84% agreement). Before quantising,
``quant_pre_process`` runs shape inference and ONNX Runtime's graph optimisations (batch
norms folded, constants computed), as ONNX Runtime recommends.

fp16 converts weights and operations to float16 (``onnxruntime.transformers.float16``),
keeping the float32 input and outputs, so callers feed the same arrays as for fp32. It is
meant for GPUs (CUDA provider); ONNX Runtime's CPU provider runs it too, but slower than
fp32 on CPUs without float16 arithmetic.

Neither is exact: :mod:`~ktcli.deployment.accuracy_check` judges the result on the test split.
"""
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ktbase.writing import private_temporary_folder

# The precisions ``kt export --dtype`` offers.
DTYPES = ('fp32', 'int8', 'fp16')
# Images per calibration batch: the calibration session keeps every intermediate tensor of
# a batch alive (5 ResNet-50s at 448 px: about 0.75 GiB per image and member), and MinMax
# ranges do not depend on how the images are batched.
CALIBRATION_BATCH = 1


class CalibrationBatches:
    """The calibration images as the batches ``quantize_static`` asks for, one at a time.

    An ``onnxruntime.quantization.CalibrationDataReader`` (which recognises any class with
    ``get_next``).

    Args:
        inputs (np.ndarray): float32 model inputs (N, 3, H, W).
        input_name (str): The model's input.
    """

    def __init__(self, inputs: np.ndarray, input_name: str) -> None:
        self._batches: Iterator[dict] = (
            {input_name: inputs[start:start + CALIBRATION_BATCH]}
            for start in range(0, len(inputs), CALIBRATION_BATCH))

    def get_next(self) -> Optional[dict]:
        """The next batch as ``{input name: batch}``, None after the last."""
        return next(self._batches, None)


def quantise_int8(source: Path, target: Path, calibration: np.ndarray) -> dict:
    """Write a static int8 (QDQ) copy of the fp32 ONNX file ``source`` to ``target``.

    Args:
        source (Path): An fp32 ONNX file written by ``kt export``.
        target (Path): The int8 file to write.
        calibration (np.ndarray): float32 model inputs (N, 3, H, W) the
            activation ranges are measured on.

    Returns:
        dict: How it was quantised (stored in the file's metadata).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with private_temporary_folder('kt_quantise_') as folder:
        prepared = Path(folder) / 'prepared.onnx'
        quant_pre_process(str(source), str(prepared))
        input_name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
        quantize_static(str(prepared), str(target), CalibrationBatches(calibration, input_name),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return dict(mode='static', format='QDQ', weights='int8 per channel',
                activations='uint8 per tensor', calibration='MinMax',
                calibration_images=len(calibration))


def convert_fp16(source: Path, target: Path) -> dict:
    """Write a float16 copy of the fp32 ONNX file ``source`` (float32 input and outputs).

    Args:
        source (Path): An fp32 ONNX file written by ``kt export``.
        target (Path): The fp16 file to write.

    Returns:
        dict: How it was converted (stored in the file's metadata).
    """
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return dict(mode='float16', io='float32')
