"""Request and response bodies of other serving stacks, read as a block's field names and rows. No I/O.

``log()`` and ``PayloadRecord`` take these as they come from the serving code, beside ``{"fields", "values"}``:

- **WML v4** (IBM Watson Machine Learning, the engine OpenScale's payload logging was made for): a request
  ``{"input_data": [{"fields": [...], "values": [[...], ...]}]}`` and a response ``{"predictions": [{"fields":
  [...], "values": [[...], ...]}]}``. The list must hold one block (one record is one block of rows).
- **The Open Inference Protocol** (KServe v2, Triton, Seldon MLServer): a request ``{"inputs": [tensor, ...]}`` and
  a response ``{"outputs": [tensor, ...]}``, each tensor ``{"name", "shape", "datatype", "data"}``. Each tensor is
  one field, named by its ``name``; its first dimension is the rows, so every tensor must have as many. A tensor of
  shape ``[N]`` or ``[N, 1]`` gives one value a row; ``[N, k]`` gives the row's ``k`` values as an array (class
  probabilities, an embedding); more dimensions give nested arrays. ``data`` may be flat (row-major) or nested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from .contract import MAX_CALL_ROWS, MAX_FIELDS
from .errors import RecordError

__all__ = ["SHAPES", "block_of"]

SHAPES: Final = {"input_data": "WML v4", "predictions": "WML v4", "inputs": "OIP", "outputs": "OIP"}
"""The key that marks each body, and the protocol it belongs to."""


def block_of(value: Mapping[str, Any], path: str) -> tuple[list[Any], list[list[Any]]] | None:
    """The field names and rows of a WML v4 or Open Inference Protocol body; None when ``value`` is neither (it has
    none of :data:`SHAPES`' keys). Raises :class:`RecordError` (``invalid_record``) for a malformed one."""
    key = next((k for k in SHAPES if k in value), None)
    if key is None:
        return None
    where = f"{path}.{key}"
    items = value[key]
    if not isinstance(items, list) or not items:
        raise RecordError("invalid_record", where, "must be a non-empty list")
    if SHAPES[key] == "WML v4":
        return _wml_block(items, where)
    return _tensors_block(items, where)


def _wml_block(items: list[Any], where: str) -> tuple[list[Any], list[list[Any]]]:
    if len(items) != 1:
        raise RecordError("invalid_record", where, f"holds {len(items)} blocks; log one record for each")
    block = items[0]
    if not isinstance(block, Mapping) or "fields" not in block or "values" not in block:
        raise RecordError("invalid_record", f"{where}[0]", 'must be {"fields": [...], "values": [[...], ...]}')
    fields, rows = block["fields"], block["values"]
    if not isinstance(fields, list) or not isinstance(rows, list):
        raise RecordError("invalid_record", f"{where}[0]", '"fields" and "values" must be lists')
    return fields, rows


def _tensors_block(tensors: list[Any], where: str) -> tuple[list[Any], list[list[Any]]]:
    if len(tensors) > MAX_FIELDS:
        raise RecordError("invalid_record", where, f"{len(tensors)} tensors; at most {MAX_FIELDS} fields")
    names: list[Any] = []
    columns: list[list[Any]] = []
    for index, tensor in enumerate(tensors):
        name, column = _tensor_column(tensor, f"{where}[{index}]")
        if columns and len(column) != len(columns[0]):
            raise RecordError(
                "invalid_record",
                f"{where}[{index}].shape",
                f"{len(column)} rows; the first tensor has {len(columns[0])} (the first dimension is the rows)",
            )
        names.append(name)
        columns.append(column)
    return names, [list(row) for row in zip(*columns, strict=True)]


def _tensor_column(tensor: Any, where: str) -> tuple[Any, list[Any]]:
    """A tensor's name, and its values a row."""
    if not isinstance(tensor, Mapping) or "name" not in tensor or "shape" not in tensor or "data" not in tensor:
        raise RecordError("invalid_record", where, 'a tensor must be {"name", "shape", "datatype", "data"}')
    shape = tensor["shape"]
    if not isinstance(shape, list) or not shape or not all(type(n) is int and n >= 0 for n in shape):
        raise RecordError("invalid_record", f"{where}.shape", "must be a non-empty list of sizes (integers >= 0)")
    rows = shape[0]
    if not 0 < rows <= MAX_CALL_ROWS:
        raise RecordError("invalid_record", f"{where}.shape", f"{rows} rows; 1 to {MAX_CALL_ROWS} a call")
    size = math.prod(shape)
    flat = _flat(tensor["data"], size, f"{where}.data")
    inner = [n for n in shape[1:] if n != 1] if math.prod(shape[1:]) > 1 else []
    if not inner:
        return tensor["name"], flat
    step = size // rows
    return tensor["name"], [_nested(flat[i * step : (i + 1) * step], inner) for i in range(rows)]


def _flat(data: Any, size: int, where: str) -> list[Any]:
    """``data`` (flat, or nested lists) as a flat list of ``size`` values."""
    if not isinstance(data, list):
        raise RecordError("invalid_record", where, "must be a list")
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
            if len(flat) > size:
                break
    if len(flat) != size:
        raise RecordError("invalid_record", where, f"holds {'more than ' if len(flat) > size else ''}{len(flat)} "
                          f"values; the shape says {size}")  # fmt: skip
    return flat


_END: Final = object()


def _nested(values: list[Any], dims: list[int]) -> list[Any]:
    """Row-major ``values`` as nested lists of the sizes ``dims``."""
    if len(dims) == 1:
        return values
    step = len(values) // dims[0]
    return [_nested(values[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]
