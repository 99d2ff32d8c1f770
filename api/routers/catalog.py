"""/catalog: the models, datasets, methods, presets and tables a sweep can name."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ReadAccess
from api.schemas import CatalogPublic
from orchestrator import tables
from orchestrator.spec import list_presets
from worker.catalog import catalog_dict

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
        tables=tables.list_tables(),
        table_formats=tables.list_formats(),
    )
