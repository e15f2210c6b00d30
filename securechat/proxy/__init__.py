"""A local OpenAI-compatible proxy over the SecureChat SDK (``securechat proxy``)."""

from securechat.proxy.app import create_proxy_app
from securechat.proxy.origin import LOOPBACK_HOSTS
from securechat.proxy.schemas import MODEL_ID

__all__ = ["LOOPBACK_HOSTS", "MODEL_ID", "create_proxy_app"]
