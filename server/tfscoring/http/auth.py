"""The optional API key: with SCORING_API_KEY set, POST /score needs `Authorization: Bearer <key>`.

On AKS, Azure ML checks the service keys in front of the container and passes
the same header on; locally nothing does.  With this check the same client
(`Authorization: Bearer <key>`) works against both.  The health probe and
/swagger.json stay open: Kubernetes probes carry no key.
"""

from __future__ import annotations

import hashlib
import hmac

from tfscoring.errors import Unauthorized

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="score"'}


def require_key(authorization: str | None, key: bytes | None) -> None:
    """Raise Unauthorized unless `authorization` is `Bearer <key>`; no key configured: every request passes."""
    if key is None:
        return
    if not authorization:
        raise Unauthorized("this endpoint needs an API key: send `Authorization: Bearer <key>`", _CHALLENGE)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Nothing of the header is echoed: a client that forgot "Bearer " sent its key as the scheme.
        raise Unauthorized("the Authorization header must be `Bearer <key>`", _CHALLENGE)
    # Constant time, and hashed first so that neither the key's length nor its bytes leak through timing.
    offered = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
    if not hmac.compare_digest(offered, hashlib.sha256(key).digest()):
        raise Unauthorized("the API key is not valid", _CHALLENGE)
