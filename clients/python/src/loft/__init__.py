"""Python client for Loft, the self-hosted webhook relay and delivery service.

- :class:`Client` / :class:`AsyncClient`: every ``loft.v1`` service over one channel.
- :func:`paginate`, :func:`error_reason`, :func:`watch` (and their async twins): helpers.
- :mod:`loft.webhooks`: verify and sign the webhooks Loft delivers.
- :mod:`loft.v1`: the generated messages and stubs (``loft.v1.destination_service_pb2``, …).
"""

from loft.client import (
    ERROR_DOMAIN,
    AsyncClient,
    Client,
    error_info,
    error_reason,
    paginate,
    paginate_async,
    watch,
    watch_async,
)

__all__ = [
    "ERROR_DOMAIN",
    "AsyncClient",
    "Client",
    "error_info",
    "error_reason",
    "paginate",
    "paginate_async",
    "watch",
    "watch_async",
]
