"""/catalog: the models, datasets, methods, presets and tables a sweep can name."""

from __future__ import annotations

from fastapi import APIRouter

from analysis import list_formats, list_tables
from api.server.deps import ReadAccess
from api.server.schemas import CatalogPublic
from worker.catalog import catalog_dict, list_presets

router = APIRouter(prefix="/catalog", tags=["catalog"], dependencies=[ReadAccess])


@router.get("", response_model=CatalogPublic)
def get_catalog() -> CatalogPublic:
    """Everything a spec may name, read from configs/ (nothing else spells these names)."""
    data = catalog_dict()
    return CatalogPublic(
        models=data["models"],
        datasets=data["datasets"],
        methods=data["methods"],
        presets=list_presets(),
        tables=list_tables(),
        table_formats=list_formats(),
    )
