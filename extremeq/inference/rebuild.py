"""Rebuilding a packed network: the float network from its recipe, packed layers at their paths,
then every variable filled from the stored arrays (names = "/"-joined attribute paths)."""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from extremeq.inference.file_format import ExportFormatError
from extremeq.inference.layers import PACKED_CLASSES
from extremeq.inference.recipes import build_from_recipe, registered_factory
from extremeq.nn.policy import set_at  # noqa: F401  (re-exported: the exporter places packed layers with it)

__all__ = ["skeleton", "fill", "fresh_rng_state", "set_at", "path_tuple", "storable_state"]


def path_tuple(path: str) -> tuple:
    """ "blocks/0/dense" -> ("blocks", 0, "dense")."""
    return tuple(int(p) if p.isdigit() else p for p in path.split("/"))


def storable_state(module) -> dict:
    """Flat {name: array} of every variable but the rng state (rebuilt by the recipe)."""
    state = nnx.state(module, nnx.Not(nnx.RngState))
    return {"/".join(str(p) for p in path): var.get_value() for path, var in nnx.to_flat_state(state)}


def skeleton(recipe, layers: Mapping, arrays: Mapping):
    """Rebuild the network from the recipe and put packed layers (holding ``arrays``) at their paths."""
    if not isinstance(recipe, Mapping) or ("model" not in recipe and "factory" not in recipe):
        raise ExportFormatError(f"the file's recipe {recipe!r} names neither a zoo 'model' nor a 'factory'")
    if "factory" in recipe:  # refused before anything is built, imported or called
        registered_factory(recipe["factory"], error=ExportFormatError)
    try:  # abstract: no weight is initialised, the file's arrays fill the structure
        model = nnx.eval_shape(lambda: build_from_recipe(recipe))
    except Exception as e:  # noqa: BLE001 - re-raised with the recipe named
        raise ExportFormatError(f"could not rebuild the network from the recipe {recipe}: {e}") from e
    for path, spec in layers.items():
        cls = PACKED_CLASSES.get(spec.get("class"))
        if cls is None:
            raise ExportFormatError(
                f"layer '{path}' has unknown class {spec.get('class')!r}; this version knows {sorted(PACKED_CLASSES)}"
            )
        prefix = path + "/"
        own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix) and "/" not in k[len(prefix) :]}
        if "w" not in own:
            raise ExportFormatError(f"the file has no weights for layer '{path}' (array '{path}/w' missing)")
        try:
            set_at(model, path_tuple(path), cls(spec["config"], own))
        except (AttributeError, IndexError, KeyError) as e:
            raise ExportFormatError(
                f"the rebuilt network has no layer at '{path}' ({e}); the recipe does not describe the exported network"
            ) from e
    fresh_rng_state(model)
    model.eval()
    return model


def fresh_rng_state(model):
    """Concrete rng keys (key(0)) and counts (0) for an abstract model's rng streams (not stored)."""
    state = nnx.state(model, nnx.RngState)
    for _, var in nnx.to_flat_state(state):
        old = var.get_value()
        if jax.dtypes.issubdtype(old.dtype, jax.dtypes.prng_key):
            n = math.prod(old.shape)
            new = jax.random.key(0) if old.shape == () else jax.random.split(jax.random.key(0), n).reshape(old.shape)
        else:
            new = jnp.zeros(old.shape, old.dtype)
        var.set_value(new)
    nnx.update(model, state)


def fill(model, arrays: Mapping, source: str):
    """Replace every variable of ``model`` (rng state aside) by the array of the same name."""
    state = nnx.state(model, nnx.Not(nnx.RngState))
    flat = list(nnx.to_flat_state(state))
    names = {"/".join(str(p) for p in path) for path, _ in flat}
    missing = sorted(names - set(arrays))
    extra = sorted(set(arrays) - names)
    if missing or extra:
        raise ExportFormatError(
            f"the arrays do not fit the network rebuilt from {source}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}"
        )
    for path, var in flat:
        name = "/".join(str(p) for p in path)
        old, new = var.get_value(), arrays[name]
        if tuple(old.shape) != tuple(new.shape) or np.dtype(old.dtype) != np.dtype(new.dtype):
            raise ExportFormatError(
                f"array '{name}' is {np.dtype(new.dtype)} {tuple(new.shape)} but the "
                f"network rebuilt from {source} needs {np.dtype(old.dtype)} {tuple(old.shape)}"
            )
        var.set_value(jnp.asarray(new))
    nnx.update(model, state)
    return model
