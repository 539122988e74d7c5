"""Recipes: how a model file says which network to rebuild, and the registry of allowed builders.

A recipe is either ``{"model": {"name": <zoo name>, **kwargs}, "num_classes": int, "input_shape":
[..]}`` (the arguments of ``extremeq.nn.models.build_model``), or ``{"factory": <registered name>,
"kwargs": {...}}`` for a network outside the zoo: the name must be one registered in Python with
:func:`register_factory` (the zoo's classes are, as ``extremeq.nn.models:CifarResNet`` etc.), and
``factory(**kwargs)``, plus ``rngs=nnx.Rngs(0)`` if it takes ``rngs``, returns the float network.

A model file is data. Loading it never imports or calls anything the file names: a factory name not
in the registry is refused with :class:`~extremeq.inference.file_format.ExportFormatError` before
anything is imported.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import numpy as np
from flax import nnx

from extremeq.inference.file_format import ExportFormatError

__all__ = ["register_factory", "build_from_recipe", "check_recipe", "registered_factory"]

_FACTORIES: dict[str, Any] = {}


def register_factory(name: str, fn) -> None:
    """Allow ``recipe={"factory": name, "kwargs": {...}}``: ``fn(**kwargs)`` builds the float network.

    Registration is code, run by the user's program before ``export``/``load``; a model file can only
    name a builder registered this way, never a module to import.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a factory name is a non-empty string, got {name!r}")
    if not callable(fn):
        raise TypeError(f"register_factory({name!r}, fn): fn must be callable, got {type(fn).__name__}")
    _FACTORIES[name] = fn


def registered_factory(name, error=ValueError):
    """The builder registered as ``name``; ``error`` (a ValueError subclass) when there is none."""
    if not _FACTORIES:
        from extremeq.nn import models

        for cls in models.ZOO_CLASSES:
            _FACTORIES.setdefault(f"extremeq.nn.models:{cls.__name__}", cls)
    if not isinstance(name, str) or name not in _FACTORIES:
        raise error(
            f"recipe factory {name!r} is not a registered model builder; a model file may only name one of "
            f"{sorted(_FACTORIES)}. Register your own with extremeq.inference.register_factory(name, fn) in "
            "your program before exporting or loading (nothing named by a file is imported)."
        )
    return _FACTORIES[name]


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    raise TypeError(
        f"recipe value {obj!r} of type {type(obj).__name__} is not JSON-serialisable; "
        "use numbers, strings, lists and dicts"
    )


def check_recipe(recipe):
    """The recipe as plain JSON values, or a ValueError saying what a recipe looks like."""
    if recipe is None:
        return None
    recipe = _jsonable(recipe)
    if "model" in recipe:
        if not isinstance(recipe["model"], dict) or "name" not in recipe["model"]:
            raise ValueError("recipe['model'] must be a dict with the zoo 'name' and its keyword arguments")
        missing = {"num_classes", "input_shape"} - set(recipe)
        if missing:
            raise ValueError(
                f"a zoo recipe needs {sorted(missing)} too: "
                "{'model': {...}, 'num_classes': 10, 'input_shape': [28, 28, 1]}"
            )
    elif "factory" in recipe:
        registered_factory(recipe["factory"], error=ValueError)
    else:
        raise ValueError(
            "a recipe is {'model': {'name': ..., **kwargs}, 'num_classes': ..., 'input_shape': ...} "
            "or {'factory': <a name registered with register_factory>, 'kwargs': {...}}"
        )
    return recipe


def build_from_recipe(recipe: Mapping):
    """The float network a recipe describes (zoo ``build_model`` or ``factory(**kwargs)``)."""
    if "model" in recipe:
        from extremeq.nn.models import build_model

        return build_model(dict(recipe["model"]), int(recipe["num_classes"]), tuple(recipe["input_shape"]), nnx.Rngs(0))
    fn = registered_factory(recipe.get("factory"), error=ExportFormatError)
    kwargs = dict(recipe.get("kwargs", {}))
    try:
        takes_rngs = "rngs" in inspect.signature(fn.__init__ if isinstance(fn, type) else fn).parameters
    except (TypeError, ValueError):
        takes_rngs = False
    if takes_rngs and "rngs" not in kwargs:
        kwargs["rngs"] = nnx.Rngs(0)
    return fn(**kwargs)
