"""Bit packing: 1-bit signs, 2-bit ternary codes and k-bit unsigned codes in uint32 words.

Formats (both little-endian within a word, so they agree with
``numpy.packbits(..., bitorder="little")`` viewed as little-endian uint32):

* 1-bit: element ``32*j + i`` of the packed axis is bit ``i`` of word ``j``.
  Bit 1 means +1, bit 0 means -1 (sign(0) = +1, as in ``extremeq.ste``).
  A length that is not a multiple of 32 is padded with 0 bits; kernels that
  compare two packed operands (XNOR) see equal padding on both sides, so the
  padding never counts.
* 2-bit ternary: element ``16*j + i`` occupies bits ``2i, 2i+1`` of word ``j``
  with the codes ``00 = 0``, ``01 = +1``, ``11 = -1`` (``10`` is unused and
  decodes to 0). Padding codes are ``00``.
* k-bit unsigned (:func:`pack_uint`, k in 1..16): element ``(32 // k)*j + i`` occupies bits
  ``k*i .. k*i + k - 1`` of word ``j`` (the two formats above are k = 1 and 2 with their codes).

Every ``pack_*`` has an exact inverse ``unpack_*`` that takes the original
length along the packed axis. The two decodes, :func:`sign_from_bit` and
:func:`ternary_from_code`, are the only statements of the formats' meaning: the
unpackers and the kernels' in-register decoders call them.

Validation: ``pack_bits`` refuses values outside {0, 1}, ``pack_ternary`` values
outside {-1, 0, +1}, every ``unpack_*`` a length outside ``[0, capacity]``. Value
checks run on concrete (eager) arrays by default (``checks=None``); inside
``jax.jit`` values are unknown, so they are skipped unless ``checks=True``, which
emits ``jax.experimental.checkify`` checks (wrap the jitted function in
``checkify.checkify`` to receive the error). ``checks=False`` never checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from extremeq.ste import sign_bit

WORD_BITS = 32
TERNARY_PER_WORD = WORD_BITS // 2


def num_words(length: int, per_word: int = WORD_BITS) -> int:
    """Number of uint32 words needed for ``length`` elements, ``ceil(length / per_word)``."""
    return -(-int(length) // per_word)


def sign_from_bit(bit):
    """The 1-bit format's decode: bit 1 -> +1, bit 0 -> -1 (int32), ``2 * bit - 1``."""
    return bit.astype(jnp.int32) * 2 - 1


def ternary_from_code(code):
    """The 2-bit format's decode: ``00 -> 0``, ``01 -> +1``, ``11 -> -1`` (``10`` -> 0), int32.

    Low bit = nonzero, high bit = negative: ``(c & 1) * (1 - 2 * (c >> 1))``.
    """
    code = code.astype(jnp.int32)
    return (code & 1) * (1 - (code >> 1) * 2)


def check_values(x, ok, what: str, fix: str, checks=None):
    """Raise ValueError when ``ok(x)`` is not all true; see the module docstring for ``checks``.

    ``ok`` maps an array (NumPy or jnp) to a boolean array of the same shape.
    """
    if checks is False:
        return
    if isinstance(x, jax.core.Tracer):
        if checks:
            msg = f"{what}; {fix}".replace("{", "{{").replace("}", "}}")  # a format string
            checkify.check(jnp.all(ok(x)), msg)
        return
    a = np.asarray(x)
    bad = ~np.asarray(ok(a), bool)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what}: found {a[idx].item()!r} at index {idx} ({int(bad.sum())} such values); {fix}")


def _check_length(length, capacity: int, name: str, unit: str) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise TypeError(f"{name}: length must be an int, got {type(length).__name__}")
    n = int(length)
    if not 0 <= n <= capacity:
        what = "is negative" if n < 0 else f"exceeds the {capacity} {unit} held by these words"
        raise ValueError(
            f"{name}: length {n} {what} (valid: 0 to {capacity}); pass the original length along the packed axis"
        )
    return int(length)


def _check_integer_like(x, name: str, allowed: str):
    dtype = jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
    if not (jnp.issubdtype(dtype, jnp.integer) or dtype == jnp.bool_):
        raise TypeError(
            f"{name} needs {allowed} (bool or integer dtype), got dtype {dtype}; "
            f"for real-valued weights call pack_signs (1-bit) or quantize first, "
            f"e.g. pack_ternary(jnp.sign(w).astype(jnp.int8))."
        )


def _to_last_padded(x, axis: int, per_word: int):
    x = jnp.moveaxis(jnp.asarray(x), axis, -1)
    length = x.shape[-1]
    pad = num_words(length, per_word) * per_word - length
    if pad:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    return x.reshape(*x.shape[:-1], -1, per_word), length


def pack_bits(bits, axis: int = -1, *, checks=None):
    """Pack a {0, 1} array (bool or integer) into uint32 words along ``axis``.

    Output shape: ``bits.shape`` with ``axis`` replaced by ``ceil(n / 32)``. Values other than 0
    and 1 raise ValueError (``checks``: see the module docstring).
    """
    _check_integer_like(bits, "pack_bits", "0/1 values")
    check_values(
        bits,
        lambda b: (b == 0) | (b == 1),
        "pack_bits needs values in {0, 1}",
        "for signs use pack_signs(x) (bit 1 for x >= 0)",
        checks,
    )
    return _pack_fields(jnp.asarray(bits).astype(jnp.uint32) & 1, axis, 1)


def unpack_bits(words, length: int, axis: int = -1):
    """Inverse of :func:`pack_bits`: uint32 words -> uint8 {0, 1}, ``length`` along ``axis``."""
    return _unpack_fields(words, length, axis, 1, "unpack_bits", "bits", jnp.uint8)


def _pack_fields(fields, axis: int, width: int):
    """uint32 values below 2^width -> words of ``WORD_BITS // width`` fields each: element
    ``per_word * j + i`` of the axis in bits ``width*i .. width*i + width - 1`` of word ``j``
    (the 1-bit and 2-bit formats are widths 1 and 2). Padding fields are 0."""
    per_word = WORD_BITS // width
    groups, _ = _to_last_padded(fields, axis, per_word)
    shifts = width * jnp.arange(per_word, dtype=jnp.uint32)
    # Distinct bit positions never carry, so a sum equals a bitwise OR.
    words = jnp.sum(groups << shifts, axis=-1, dtype=jnp.uint32)
    return jnp.moveaxis(words, -1, axis)


def _unpack_fields(words, length, axis: int, width: int, name: str, unit: str, dtype, decode=None):
    """Inverse of :func:`_pack_fields`: ``length`` fields along ``axis``, through ``decode``, as ``dtype``."""
    words = jnp.asarray(words)
    if words.dtype != jnp.uint32:
        raise TypeError(f"{name} needs uint32 words, got dtype {words.dtype}")
    per_word = WORD_BITS // width
    w = jnp.moveaxis(words, axis, -1)
    length = _check_length(length, w.shape[-1] * per_word, name, unit)
    shifts = width * jnp.arange(per_word, dtype=jnp.uint32)
    fields = (w[..., None] >> shifts) & jnp.uint32(2**width - 1)
    if decode is not None:
        fields = decode(fields)
    fields = fields.reshape(*w.shape[:-1], -1)[..., :length].astype(dtype)
    return jnp.moveaxis(fields, -1, axis)


def pack_uint(values, bits: int, axis: int = -1, *, checks=None):
    """Pack unsigned integers in [0, 2^bits) into uint32 words, ``32 // bits`` a word (k-bit codes:
    a codebook index, ``extremeq.inference``'s format for a registered method's own codes)."""
    _check_field_width(bits)
    _check_integer_like(values, "pack_uint", f"values in [0, 2^{bits})")
    check_values(
        values,
        lambda v: (v >= 0) & (v < 2**bits),
        f"pack_uint needs values in [0, {2**bits})",
        f"store at most 2^{bits} distinct codes (a codebook index)",
        checks,
    )
    return _pack_fields(jnp.asarray(values).astype(jnp.uint32), axis, bits)


def unpack_uint(words, length: int, bits: int, axis: int = -1, dtype=jnp.int32):
    """Inverse of :func:`pack_uint`: words -> values in [0, 2^bits) of ``dtype``."""
    _check_field_width(bits)
    return _unpack_fields(words, length, axis, bits, "unpack_uint", f"{bits}-bit values", dtype)


def _check_field_width(bits):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(f"a packed field is 1 to 16 bits wide, got {bits!r}")


def pack_signs(x, axis: int = -1):
    """Pack sign(x) (bit 1 for x >= 0, i.e. +1; bit 0 for -1) into uint32 words."""
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.signedinteger)):
        raise TypeError(
            f"pack_signs needs a float or signed-integer array, got dtype {x.dtype}; for 0/1 bits use pack_bits."
        )
    return pack_bits(sign_bit(x), axis, checks=False)


def unpack_signs(words, length: int, axis: int = -1, dtype=jnp.float32):
    """Inverse of :func:`pack_signs`: words -> +-1 values of ``dtype``."""
    return sign_from_bit(unpack_bits(words, length, axis)).astype(dtype)


def pack_ternary(t, axis: int = -1, *, checks=None):
    """Pack ternary codes t in {-1, 0, +1} (integer dtype) into uint32, 16 per word.

    Codes: 0 -> 00, +1 -> 01, -1 -> 11 (two's-complement low bits of t). Other values raise
    ValueError (``checks``: see the module docstring).
    """
    _check_integer_like(t, "pack_ternary", "-1/0/+1 values")
    t = jnp.asarray(t)
    if t.dtype == jnp.bool_:
        raise TypeError("pack_ternary needs signed integers in {-1, 0, 1}, got bool")
    check_values(
        t,
        lambda v: (v >= -1) & (v <= 1),
        "pack_ternary needs values in {-1, 0, +1}",
        "quantize first, e.g. pack_ternary(jnp.sign(q).astype(jnp.int8))",
        checks,
    )
    codes = (t.astype(jnp.int32) & 3).astype(jnp.uint32)  # 0->0, 1->1, -1->3
    return _pack_fields(codes, axis, 2)


def unpack_ternary(words, length: int, axis: int = -1, dtype=jnp.int8):
    """Inverse of :func:`pack_ternary`: words -> values in {-1, 0, +1} of ``dtype``."""
    return _unpack_fields(words, length, axis, 2, "unpack_ternary", "codes", dtype, ternary_from_code)


def split_ternary(words):
    """2-bit words -> (words of the +1 codes only, words of the -1 codes only), same format.

    TTQ's two scales (W_p on +1, W_n on -1) run as two single-scale ternary products.
    """
    lo = words & jnp.uint32(0x55555555)  # bit 2i: nonzero
    hi = (words >> 1) & jnp.uint32(0x55555555)  # bit 2i+1 moved to 2i: negative
    pos = lo & ~hi  # code 01
    neg = hi | (hi << 1)  # code 11
    return pos, neg


def packed_nbytes(num_elements: int, bits: int) -> int:
    """Bytes that ``num_elements`` values take at ``bits`` per value, packed (no padding)."""
    return -(-int(num_elements) * int(bits) // 8)


def np_pack_bits_reference(bits: np.ndarray) -> np.ndarray:
    """NumPy reference for the last axis: ``np.packbits(little)`` viewed as uint32."""
    n = bits.shape[-1]
    pad = num_words(n) * WORD_BITS - n
    b = np.pad(bits.astype(np.uint8), [(0, 0)] * (bits.ndim - 1) + [(0, pad)])
    return np.packbits(b, axis=-1, bitorder="little").view("<u4")
