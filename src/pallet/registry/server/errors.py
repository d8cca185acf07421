"""Distribution-API errors: the spec's codes, their HTTP statuses, and the JSON body they answer.

Body: `{"errors": [{"code": CODE, "message": str, "detail": any}]}` (spec.md "Error Codes").
Statuses follow distribution (registry/api/errcode/register.go), the reference implementation,
where the spec leaves them open.
"""

from __future__ import annotations

import json
from typing import Any

# code -> (HTTP status, the spec's description, used as the default message)
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
}


class RegistryError(Exception):
    """One distribution error; `status` defaults to the code's, `headers` are added to the answer."""

    def __init__(self, code: str, message: str | None = None, detail: Any = None, *,
                 status: int | None = None, headers: dict[str, str] | None = None) -> None:
        default_status, description = CODES[code]
        self.code = code
        self.message = message or description
        self.detail = detail
        self.status = status or default_status
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.message}")

    def body(self) -> bytes:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return json.dumps({"errors": [entry]}).encode()
