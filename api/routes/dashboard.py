"""The dashboard page (``GET /``) and its assets, served from the installed package.

The files are package data of ``api`` (``api/static``, with the chart library vendored into
``api/static/vendor`` by the setup script or the image build), so the page works without any
internet access and from a wheel as well as from a checkout. ``no-cache`` makes browsers
revalidate (a cheap 304 through the ETag), so a new release's page is never mixed with old
scripts.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

router = APIRouter(tags=["dashboard"], include_in_schema=False)

STATIC_DIR = Path(str(resources.files("api") / "static")).resolve()
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".LICENSE": "text/plain"}


@router.get("/", response_class=FileResponse)
async def dashboard_page() -> FileResponse:
    return _file("index.html")


@router.get("/static/{name:path}", response_class=FileResponse)
async def dashboard_asset(name: str) -> FileResponse:
    return _file(name)


def _file(name: str) -> FileResponse:
    path = (STATIC_DIR / name).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise HTTPException(404, f"no dashboard asset {name!r}")
    return FileResponse(path, media_type=_TYPES.get(path.suffix), headers=_HEADERS)
