"""The responder: the far end agents measure against (TWAMP-light reflector, bandwidth server).

`serve(cfg)` starts every configured service in one asyncio process and runs until
cancelled. To add a service (e.g. a SIP UAS), give `ResponderConfig` a port field and add
one `if cfg.<port>` block in `start_services` that starts it and appends it to the list.
"""

from agent.responder.service import ResponderConfig, Service, serve, start_services

__all__ = ["ResponderConfig", "Service", "serve", "start_services"]
