"""A small HTTP client of the REST API; the CLI uses nothing else to reach the service."""

from __future__ import annotations

from typing import Any

import httpx

from api import API_PREFIX

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """The service answered with an error, or could not be reached. `detail` is what the server wrote."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


def _problem_lines(detail: Any) -> str:
    if isinstance(detail, list):
        lines = []
        for p in detail:
            if isinstance(p, dict) and "field" in p and "message" in p:
                lines.append(f"  {p['field']}: {p['message']}")
            else:
                lines.append(f"  {p}")
        return "\n" + "\n".join(lines)
    return f" {detail}"


class ApiClient:
    def __init__(
        self, url: str = DEFAULT_URL, token: str | None = None, *, timeout: float = 30.0, transport: Any = None
    ):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the service at {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ClientError(
                f"error (HTTP {r.status_code}):{_problem_lines(detail)}", status=r.status_code, detail=detail
            )
        return r

    # ---- endpoints ---------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health").json()

    def catalog(self) -> dict[str, Any]:
        return self.request("GET", "/catalog").json()

    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.request("POST", "/sweeps", json=body, headers=headers).json()

    def sweeps(self, *, limit: int = 50, offset: int = 0, status: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return self.request("GET", "/sweeps", params=params).json()

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/sweeps/{sweep_id}").json()

    def cancel(self, sweep_id: str) -> dict[str, Any]:
        return self.request("POST", f"/sweeps/{sweep_id}/cancel").json()

    def resume(self, sweep_id: str) -> dict[str, Any]:
        return self.request("POST", f"/sweeps/{sweep_id}/resume").json()

    def extend(self, sweep_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/sweeps/{sweep_id}/extend", json=changes).json()

    def suggestions(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/sweeps/{sweep_id}/suggestions").json()

    def trials(self, sweep_id: str, **params: Any) -> dict[str, Any]:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", f"/sweeps/{sweep_id}/trials", params=clean).json()

    def tables(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/sweeps/{sweep_id}/tables").json()

    def table(self, sweep_id: str, name: str, fmt: str = "markdown") -> bytes:
        return self.request("GET", f"/sweeps/{sweep_id}/tables/{name}", params={"format": fmt}).content

    def report(self, sweep_id: str) -> bytes:
        return self.request("GET", f"/sweeps/{sweep_id}/report").content

    def plots(self, sweep_id: str) -> dict[str, Any]:
        return self.request("GET", f"/sweeps/{sweep_id}/plots").json()

    def plot(self, sweep_id: str, name: str, fmt: str) -> bytes:
        return self.request("GET", f"/sweeps/{sweep_id}/plots/{name}.{fmt}").content

    def results(self, sweep_id: str, which: str) -> bytes:
        return self.request("GET", f"/sweeps/{sweep_id}/results/{which}.parquet").content
