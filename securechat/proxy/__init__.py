"""A local OpenAI-compatible proxy over the SecureChat SDK (``securechat proxy``)."""

from securechat.proxy.app import create_proxy_app
from securechat.proxy.openai_common import MODEL_ID
from securechat.proxy.origin import LOOPBACK_HOSTS

__all__ = ["LOOPBACK_HOSTS", "MODEL_ID", "create_proxy_app"]
