"""Rules-as-data files (identity.yaml, segments.yaml, privacy.yaml): read, validated, explained.

Each file is optional (its model's defaults apply without it); a mistake is reported with the
file's name and the field it concerns, never as a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_yaml_model(path: Path | None, model: type[M], error: type[ValueError]) -> M:
    """``model`` from the YAML mapping in ``path`` (defaults when there is no file); ``error``
    with ``file: field: problem`` when it is not valid."""
    if path is None or not path.exists():
        return model()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise error(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path.name}: expected a mapping at the top level")
    try:
        return model(**data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise error(f"{path.name}: {where + ': ' if where else ''}"
                    f"{first['msg'].removeprefix('Value error, ')}") from None
